"""End-to-end harness: the built app served by `python -m carmenta run`, real Chromium."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from carmenta.settings import PROJECT_ROOT
from tests.e2e.pages import SignUpPage
from tests.model_servers import ModelServer, ModelServerState
from tests.oidc_mock import OidcPeer, running_oidc_provider

# The model the app is given, served by the local stand-in of an OpenAI-compatible API.
E2E_MODEL = "gpt-4.1-mini"
# Signing up with this address makes an admin (the app reads ADMIN_EMAILS).
E2E_ADMIN_EMAIL = "e2e-admin@example.com"
ECHO_WORD_SECONDS = 0.06


@dataclass(frozen=True)
class Account:
    email: str
    password: str
    storage_state: Path


STARTUP_TIMEOUT_SECONDS = 600  # the first run also installs the frontend packages


def _free_port() -> int:
    preferred = int(os.environ.get("E2E_PORT", "3917"))
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]


def _wait_for_health(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited early:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the app did not become healthy:\n{log_path.read_text()[-4000:]}")


class RunningApp:
    def __init__(
        self, url: str, process: subprocess.Popen, log_path: Path, database_url: str
    ) -> None:
        self.url = url
        self.database_url = database_url
        self.process = process
        self.log_path = log_path


@pytest.fixture(scope="session")
def app_port() -> int:
    return _free_port()


@pytest.fixture(scope="session")
def oidc_provider(app_port) -> Iterator[OidcPeer]:
    """A real OpenID Connect provider the app is configured to connect to."""
    callback = f"http://localhost:{app_port}/connections/oidc/callback"
    with running_oidc_provider(redirect_uris=[callback]) as peer:
        yield peer


@pytest.fixture(scope="session")
def model_server() -> Iterator[ModelServer]:
    """An OpenAI-compatible model API that echoes, a word at a time, for the app to use."""
    server = ModelServer(ModelServerState(echo_delay=ECHO_WORD_SECONDS)).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def app_server(
    postgres_server, tmp_path_factory, app_port, oidc_provider, model_server
) -> Iterator[RunningApp]:
    data_dir = tmp_path_factory.mktemp("e2e-data")
    log_path = data_dir / "app.log"
    port = app_port
    with postgres_server.throwaway_database() as database_url:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "DATA_DIR": str(data_dir),
            "PORT": str(port),
            "PUBLIC_URL": f"http://localhost:{port}",
            "CARMENTA_ENV": "development",
            "ADMIN_EMAILS": E2E_ADMIN_EMAIL,
            "OIDC_ISSUER": oidc_provider.url,
            "OIDC_CLIENT_ID": oidc_provider.client_id,
            "OIDC_CLIENT_SECRET": oidc_provider.client_secret,
            "OIDC_NAME": "Acme SSO",
            "OPENAI_BASE_URL": model_server.openai_base_url,
            "OPENAI_API_KEY": "sk-e2e-local",
            "OPENAI_MODELS": E2E_MODEL,
            "DEFAULT_MODEL": f"openai:{E2E_MODEL}",
        }
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "carmenta", "run"],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        app = RunningApp(f"http://localhost:{port}", process, log_path, database_url)
        try:
            _wait_for_health(app.url, process, log_path)
            yield app
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


def _chromium_executable() -> str | None:
    for candidate in (
        os.environ.get("CHROMIUM_PATH"),
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None  # Playwright's own Chromium, installed by scripts/setup.sh


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=_chromium_executable(),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-dev-shm-usage",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def account(browser, app_server, tmp_path_factory) -> Account:
    """One account signed up through the UI per run; its signed-in state is reused."""
    email = f"e2e-{uuid.uuid4().hex[:10]}@example.com"
    created = Account(
        email=email,
        password="a long enough passphrase 42",
        storage_state=tmp_path_factory.mktemp("auth") / "state.json",
    )
    context = browser.new_context(base_url=app_server.url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    SignUpPage(page).open().sign_up(email=created.email, password=created.password, name="Ada")
    page.wait_for_url(f"{app_server.url}/")
    context.storage_state(path=str(created.storage_state))
    context.close()
    return created


def _new_page(browser, app_server, **context_options):
    context = browser.new_context(base_url=app_server.url, **context_options)
    new_page = context.new_page()
    new_page.set_default_timeout(15_000)
    return context, new_page


@pytest.fixture
def page(browser, app_server, account) -> Iterator[object]:
    """A signed-in page at desktop width."""
    context, signed_in = _new_page(
        browser,
        app_server,
        viewport={"width": 1280, "height": 800},
        storage_state=str(account.storage_state),
    )
    yield signed_in
    context.close()


@pytest.fixture
def anonymous_page(browser, app_server) -> Iterator[object]:
    context, anonymous = _new_page(browser, app_server, viewport={"width": 1280, "height": 800})
    yield anonymous
    context.close()


@pytest.fixture
def phone_page(browser, app_server, account) -> Iterator[object]:
    context, phone = _new_page(
        browser,
        app_server,
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
        storage_state=str(account.storage_state),
    )
    yield phone
    context.close()
