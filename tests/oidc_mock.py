"""A real OpenID Connect provider for tests: PyPI `oidc-provider-mock`, on loopback."""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class OidcPeer:
    url: str
    client_id: str
    client_secret: str

    def put_user(self, subject: str, **claims: Any) -> None:
        httpx.put(f"{self.url}/users/{subject}", json=claims, timeout=5).raise_for_status()


@contextmanager
def running_oidc_provider(*, redirect_uris: list[str]) -> Iterator[OidcPeer]:
    """Start the provider in a thread and register one confidential client."""
    with warnings.catch_warnings():
        # The mock imports authlib modules that announce their own deprecation; authlib
        # adds an "always" filter of its own on import, so it is imported first.
        import authlib.deprecate  # noqa: F401

        warnings.simplefilter("ignore", DeprecationWarning)
        import oidc_provider_mock
    from werkzeug.serving import make_server

    # authlib refuses plain http unless told this is a local test.
    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"
    app = oidc_provider_mock.app(require_client_registration=True)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="oidc-mock", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        registered = httpx.post(
            f"{url}/oauth2/clients",
            json={
                "redirect_uris": redirect_uris,
                "token_endpoint_auth_method": "client_secret_basic",
            },
            timeout=10,
        )
        registered.raise_for_status()
        client = registered.json()
        yield OidcPeer(
            url=url, client_id=client["client_id"], client_secret=client["client_secret"]
        )
    finally:
        server.shutdown()
        thread.join(5)
