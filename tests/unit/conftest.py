import pytest

from carmenta.settings import Settings


@pytest.fixture(autouse=True)
def _no_configuration_from_the_environment(monkeypatch):
    # Unit tests see only the values they pass; integration fixtures may have set
    # DATABASE_URL and friends for the session.
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
