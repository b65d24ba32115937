"""Connecting a service with an API key: check its form, check it with the provider, save it.

`api_key_format_problem` is the as-you-type check (no network). `add_api_key` runs it,
checks a base URL where the provider takes one, asks the provider whether it accepts
the key (listing models), and only then saves it, encrypted, through the connections
service. Every refusal is an `ApiKeyRejected` whose message is meant for the person
and never contains the key.
"""

from __future__ import annotations

import ipaddress
import logging
import uuid
from urllib.parse import urlsplit

import httpx
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta.connections import service as connections_service
from carmenta.connections.providers import registry
from carmenta.connections.providers.base import ProviderSpec
from carmenta.errors import CarmentaError
from carmenta.settings import Settings

logger = logging.getLogger(__name__)

# Real keys are far shorter; a longer paste is something else (a whole file, a log).
MAX_KEY_LENGTH = 512
MAX_URL_LENGTH = 2000
VALIDATION_TIMEOUT_SECONDS = 15.0
NOT_ACCEPTED = "The provider did not accept this key."


class ApiKeyRejected(CarmentaError):
    """A key or base URL that was not saved; the message says why, in plain words."""


def api_key_format_problem(provider: ProviderSpec, api_key: str) -> str | None:
    """What is visibly wrong with a key before anyone is asked; None when nothing is."""
    key = api_key.strip()
    if not key:
        return "Paste the API key."
    if len(key) > MAX_KEY_LENGTH:
        return f"That is longer than an API key ({len(key)} characters). Paste only the key."
    if any(char.isspace() for char in key):
        return "An API key has no spaces or line breaks in it. Paste only the key."
    if not key.isascii() or not key.isprintable():
        return "An API key has only plain letters, digits and punctuation in it."
    check = registry.api_key_format_check(provider)
    return check(key) if check is not None else None


def _internal_address(host: str) -> tuple[bool, bool]:
    """(is internal, is link-local or unspecified) for a host name or literal address."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith((".localhost", ".local", ".internal")):
        return True, False
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False, False
    dangerous = address.is_link_local or address.is_unspecified or address.is_multicast
    internal = address.is_private or address.is_loopback or address.is_reserved or dangerous
    return internal, dangerous


def base_url_problem(base_url: str | None, *, settings: Settings) -> str | None:
    """What is wrong with an API base URL; None when it may be called."""
    url = (base_url or "").strip()
    if not url:
        return "Enter the API's base URL, such as https://api.openai.com/v1."
    if len(url) > MAX_URL_LENGTH:
        return "That base URL is too long."
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return "That base URL is not a valid address."
    if parts.scheme not in ("http", "https"):
        return "The base URL must start with https:// (or http:// for a server on your network)."
    if not parts.hostname:
        return "The base URL has no host name."
    if parts.username is not None or parts.password is not None:
        return "The base URL must not contain a user name or password; the key goes in its field."
    if parts.query or parts.fragment:
        return "The base URL must not end with a query (?…) or a fragment (#…)."
    internal, dangerous = _internal_address(parts.hostname)
    if dangerous:
        return "That address cannot be used as an API base URL."
    if settings.is_production:
        if parts.scheme != "https":
            return "The base URL must use https:// so the key is never sent in the clear."
        if internal:
            return "This server does not call local or private network addresses."
    return None


def normalized_base_url(base_url: str) -> str:
    return base_url.strip().rstrip("/")


def _host(provider: ProviderSpec, base_url: str | None) -> str:
    url = base_url or provider.endpoints.api_base or ""
    return urlsplit(url).netloc or provider.name


def _refusal(provider: ProviderSpec, host: str, error: httpx.HTTPStatusError) -> ApiKeyRejected:
    status = error.response.status_code
    if status in (401, 403):
        return ApiKeyRejected(NOT_ACCEPTED)
    if status == 404:
        return ApiKeyRejected(
            f"{host} has no model list at this address. Check that it is the API's base URL."
        )
    if status == 429:
        return ApiKeyRejected(f"{host} is limiting requests right now. Try again in a minute.")
    if 300 <= status < 400:
        return ApiKeyRejected(
            f"{host} answered with a redirect. Enter the address it redirects to instead."
        )
    return ApiKeyRejected(f"{host} answered with an error (HTTP {status}). Try again later.")


def _unreachable(host: str, error: httpx.TransportError) -> ApiKeyRejected:
    if isinstance(error, httpx.TimeoutException):
        reason = f"no answer within {VALIDATION_TIMEOUT_SECONDS:.0f} seconds"
    elif isinstance(error, httpx.ConnectError):
        reason = "the connection was refused or the host name was not found"
    else:
        reason = "the connection failed"
    return ApiKeyRejected(f"Could not reach {host}: {reason}.")


async def add_api_key(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    provider: ProviderSpec,
    api_key: str,
    base_url: str | None,
    settings: Settings,
) -> connections_service.ConnectionView:
    """Validate the key with the provider, then save it for this user. Raises ApiKeyRejected."""
    if provider.auth_type != "api_key" or provider.validate_api_key is None:
        raise ApiKeyRejected(f"{provider.name} connects through its own sign-in page, not a key.")
    key = api_key.strip()
    problem = api_key_format_problem(provider, key)
    if problem:
        raise ApiKeyRejected(problem)
    url: str | None = None
    if provider.needs_base_url:
        problem = base_url_problem(base_url, settings=settings)
        if problem:
            raise ApiKeyRejected(problem)
        url = normalized_base_url(base_url or "")
    host = _host(provider, url)

    # No redirects: a key is only ever sent to the address it was entered for.
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(VALIDATION_TIMEOUT_SECONDS, connect=5.0), follow_redirects=False
    ) as client:
        try:
            identity = await provider.validate_api_key(client, key, url)
        except httpx.HTTPStatusError as error:
            logger.info("%s refused a key check: HTTP %d", provider.id, error.response.status_code)
            raise _refusal(provider, host, error) from None
        except httpx.TransportError as error:
            logger.info("%s could not be reached: %s", provider.id, type(error).__name__)
            raise _unreachable(host, error) from None
        except (ValueError, KeyError, TypeError):
            raise ApiKeyRejected(
                f"{host} did not answer like {provider.name} (no list of models)."
            ) from None

    view = await connections_service.save_api_key_connection(
        session=session,
        owner_id=owner_id,
        provider=provider,
        identity=identity,
        api_key=key,
        base_url=url,
    )
    logger.info("user %s added a %s key (%s)", owner_id, provider.id, identity.account_id)
    return view
