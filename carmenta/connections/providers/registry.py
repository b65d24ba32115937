"""Every provider Carmenta knows, found by looking at this package.

A provider is a module here. It exports `PROVIDER` (its declaration with the real
endpoints) and `build(endpoints=..., client_id=..., client_secret=...)`, which makes
the same declaration bound to other endpoints and to the operator's OAuth app; or,
for a provider configured entirely by settings, `build_provider(settings, endpoints)`
and optionally `async prepare(settings)` (network set-up such as OIDC discovery).
Adding a provider is adding a module: nothing here names one.

OAUTH_ENDPOINT_OVERRIDES (JSON: provider id -> {authorize_url, token_url,
revoke_url, api_base}) points a provider elsewhere (GitHub Enterprise, local test
servers) while every code path stays the same.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import pkgutil
from collections.abc import Callable
from types import ModuleType
from urllib.parse import urlsplit

from carmenta.connections import providers as _package
from carmenta.connections.providers.base import Endpoints, ProviderSpec
from carmenta.errors import ConfigurationError
from carmenta.settings import Settings

# Shown in this order on the Connections page; modules not listed follow by name.
_DISPLAY_ORDER = (
    "google",
    "slack",
    "notion",
    "github",
    "dropbox",
    "oidc",
    "anthropic",
    "openai_compatible",
)
_NOT_PROVIDERS = {"base", "registry"}
_ENDPOINT_FIELDS = {field.name for field in dataclasses.fields(Endpoints)}


class UnknownProvider(KeyError):
    """No provider module has this id."""

    def __init__(self, provider_id: str) -> None:
        super().__init__(provider_id)
        self.provider_id = provider_id

    def __str__(self) -> str:
        return f"No service called {self.provider_id!r} is known to Carmenta."


@functools.cache
def _modules() -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for info in pkgutil.iter_modules(_package.__path__):
        if info.name in _NOT_PROVIDERS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{_package.__name__}.{info.name}")
        if hasattr(module, "PROVIDER") or hasattr(module, "build_provider"):
            found[info.name] = module
    ordered = [name for name in _DISPLAY_ORDER if name in found]
    ordered += sorted(name for name in found if name not in _DISPLAY_ORDER)
    return {name: found[name] for name in ordered}


def _module(provider_id: str) -> ModuleType:
    module = _modules().get(provider_id)
    if module is None:
        raise UnknownProvider(provider_id)
    return module


@functools.lru_cache(maxsize=8)
def _parse_overrides(raw: str | None) -> dict[str, dict[str, str]]:
    if not raw or not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError as error:
        raise ConfigurationError(
            f"OAUTH_ENDPOINT_OVERRIDES is not valid JSON ({error.msg} at {error.pos})"
        ) from None
    if not isinstance(parsed, dict):
        raise ConfigurationError(
            'OAUTH_ENDPOINT_OVERRIDES must be a JSON object like {"github": {"api_base": "..."}}'
        )
    overrides: dict[str, dict[str, str]] = {}
    for provider_id, values in parsed.items():
        if not isinstance(values, dict):
            raise ConfigurationError(f"OAUTH_ENDPOINT_OVERRIDES[{provider_id!r}] must be an object")
        unknown = set(values) - _ENDPOINT_FIELDS
        if unknown:
            raise ConfigurationError(
                f"OAUTH_ENDPOINT_OVERRIDES[{provider_id!r}] has unknown keys "
                f"{sorted(unknown)}; allowed: {sorted(_ENDPOINT_FIELDS)}"
            )
        for name, url in values.items():
            parts = urlsplit(url) if isinstance(url, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigurationError(
                    f"OAUTH_ENDPOINT_OVERRIDES[{provider_id!r}][{name!r}] must be an http(s) URL"
                )
        overrides[provider_id] = {name: url.rstrip("/") for name, url in values.items()}
    return overrides


def endpoint_overrides(provider_id: str, settings: Settings) -> dict[str, str]:
    return dict(_parse_overrides(settings.oauth_endpoint_overrides).get(provider_id, {}))


def client_credentials(provider_id: str, settings: Settings) -> tuple[str | None, str | None]:
    """The operator's OAuth app for this provider: (client id, client secret)."""
    client_id = getattr(settings, f"{provider_id}_client_id", None)
    client_secret = getattr(settings, f"{provider_id}_client_secret", None)
    return (client_id or None, client_secret or None)


def _spec(module: ModuleType, provider_id: str, settings: Settings) -> ProviderSpec:
    overrides = endpoint_overrides(provider_id, settings)
    if hasattr(module, "build_provider"):
        return module.build_provider(settings, overrides)
    default: ProviderSpec = module.PROVIDER
    endpoints = dataclasses.replace(default.endpoints, **overrides)
    client_id, client_secret = client_credentials(provider_id, settings)
    if hasattr(module, "build"):
        return module.build(endpoints=endpoints, client_id=client_id, client_secret=client_secret)
    return dataclasses.replace(default, endpoints=endpoints)


def get_provider(provider_id: str, settings: Settings) -> ProviderSpec:
    """The provider with this id, bound to this configuration. Raises UnknownProvider."""
    return _spec(_module(provider_id), provider_id, settings)


async def load_provider(provider_id: str, settings: Settings) -> ProviderSpec:
    """`get_provider`, after any network set-up the provider needs (OIDC discovery).

    Use this before an authorization, a token exchange, a refresh or a revocation.
    Raises UnknownProvider, or the provider's own error when its set-up fails.
    """
    module = _module(provider_id)
    prepare = getattr(module, "prepare", None)
    if prepare is not None and is_configured(_spec(module, provider_id, settings), settings):
        await prepare(settings)
    return _spec(module, provider_id, settings)


def all_providers(settings: Settings) -> list[ProviderSpec]:
    """Every provider, configured or not, in display order."""
    return [_spec(module, provider_id, settings) for provider_id, module in _modules().items()]


def is_configured(provider: ProviderSpec, settings: Settings) -> bool:
    """OAuth providers need the operator's client id and secret; API-key ones need nothing."""
    if provider.auth_type == "api_key":
        return True
    module = _module(provider.id)
    configured: Callable[[Settings], bool] | None = getattr(module, "is_configured", None)
    if configured is not None:
        return configured(settings)
    client_id, client_secret = client_credentials(provider.id, settings)
    return bool(client_id and client_secret)


def api_key_format_check(provider: ProviderSpec) -> Callable[[str], str | None] | None:
    """The provider's own as-you-type key check (a known prefix, say), if it has one."""
    return getattr(_module(provider.id), "key_format_problem", None)
