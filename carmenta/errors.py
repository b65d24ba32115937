"""Errors that carry a message meant for a person, not a stack trace."""


class CarmentaError(Exception):
    """Base class for errors whose message can be shown as is."""


class ConfigurationError(CarmentaError):
    """The configuration is invalid or unsafe; the message says what to change."""


class StartupError(CarmentaError):
    """The app cannot start; the message says why and what to do."""


class DatabaseUnavailableError(StartupError):
    """The database cannot be reached."""
