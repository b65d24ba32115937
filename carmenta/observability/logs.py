"""One logging set-up for the web app, its in-process jobs and worker processes.

`LOG_FORMAT=text` writes readable lines for a terminal (`make run`); `json` writes one
object per line for a log service (production). Every record carries the request or
job it belongs to (`request_id`, `user_id`, `job_id`) when there is one, and passes a
redaction filter that blanks anything shaped like a credential before it is written.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

from carmenta.settings import LogFormat, Settings

REDACTED = "[redacted]"

# Record attributes every LogRecord has; anything else was passed in `extra=`.
_STANDARD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

# Loggers of the web server that otherwise write with their own handlers.
_SERVER_LOGGERS = ("_granian", "granian.access", "uvicorn", "uvicorn.error", "uvicorn.access")

# -- what a credential looks like ------------------------------------------------------

# Names of secrets, not secrets.
_SECRET_NAMES = "|".join(  # noqa: S105
    (
        "password",
        "passwd",
        "passphrase",
        "secret",
        "client_secret",
        "api[_-]?key",
        "apikey",
        "access[_-]?token",
        "refresh[_-]?token",
        "id[_-]?token",
        "token",
        "authorization",
        "session",
        "cookie",
        "private[_-]?key",
    )
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM blocks (signing keys) whole.
    (
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)", re.S
        ),
        REDACTED,
    ),
    # Authorization headers and their schemes.
    (re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{8,}", re.I), rf"\1 {REDACTED}"),
    # JSON Web Tokens (sessions, Clerk, Supabase keys).
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), REDACTED),
    # Vendor key shapes: Anthropic/OpenAI/Stripe-like, Slack, GitHub, Google, Svix, AWS.
    (re.compile(r"\b(?:sk|pk|rk)[-_][A-Za-z0-9_-]{12,}"), REDACTED),
    (re.compile(r"\bxox[abeoprs]-[A-Za-z0-9-]{8,}"), REDACTED),
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"), REDACTED),
    (re.compile(r"\bya29\.[A-Za-z0-9._-]{10,}"), REDACTED),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]{10,}"), REDACTED),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), REDACTED),
    # name=value, name: value, "name": "value" for secret-sounding names.
    (
        re.compile(rf"""(?i)(["']?\b(?:{_SECRET_NAMES})\b["']?\s*[:=]\s*["']?)([^\s"'&,;}}\]]+)"""),
        rf"\1{REDACTED}",
    ),
    # One-time values in URLs (OAuth `code` and `state`, signed URL signatures).
    (re.compile(r"(?i)([?&](?:code|state|sig|signature|key)=)[^&\s\"']+"), rf"\1{REDACTED}"),
    # Credentials inside URLs: scheme://user:password@host.
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@", re.I), rf"\1{REDACTED}@"),
)


def redact(text: str) -> str:
    """`text` with anything that looks like a token, key or password blanked out."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    return value


class RedactingFilter(logging.Filter):
    """Blanks credentials in a record's message, exception, stack and extra fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep the template, never the args
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in list(record.__dict__.items()):
            if name not in _STANDARD_ATTRIBUTES:
                setattr(record, name, _redact_value(value))
        return True


# -- which request or job a record belongs to ------------------------------------------

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "carmenta_log_context", default=None
)


@contextlib.contextmanager
def log_context(**fields: str) -> Iterator[dict[str, str]]:
    """Records logged inside carry `fields`; `bind()` adds more until the block ends."""
    current = {**(_context.get() or {}), **fields}
    token = _context.set(current)
    try:
        yield current
    finally:
        _context.reset(token)


def bind(**fields: str) -> None:
    """Add fields (a user id once known) to the surrounding `log_context`, if any."""
    current = _context.get()
    if current is not None:
        current.update(fields)


def context_fields() -> dict[str, str]:
    return dict(_context.get() or {})


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_context.get() or {}).items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


# -- formats ---------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context and extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD_ATTRIBUTES and not name.startswith("_"):
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message` followed by the request or job it belongs to."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = [
            f"{name}={getattr(record, name)}"
            for name in ("request_id", "user_id", "job_id")
            if getattr(record, name, None)
        ]
        if not tags:
            return line
        first, newline, rest = line.partition("\n")
        return f"{first} [{' '.join(tags)}]{newline}{rest}"


class _CarmentaHandler(logging.StreamHandler):
    """The handler this module installs, so configuring again replaces it."""


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> logging.Handler:
    """Send every logger's records, redacted and in LOG_FORMAT, to `stream` (stderr)."""
    level = logging.getLevelName(settings.log_level.upper())
    handler = _CarmentaHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    handler.setFormatter(
        JsonFormatter() if settings.log_format is LogFormat.json else TextFormatter()
    )
    root = logging.getLogger()
    for existing in list(root.handlers):
        if isinstance(existing, _CarmentaHandler):
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else logging.INFO)
    if settings.log_format is LogFormat.json:
        # The server's own lines become JSON records too instead of free text.
        for name in _SERVER_LOGGERS:
            server_logger = logging.getLogger(name)
            server_logger.handlers.clear()
            server_logger.propagate = True
    return handler
