"""Which models a person can use, and with which key.

Two sources: the operator's (ANTHROPIC_* and OPENAI_* settings, billed to the
operator) and the person's own API-key connections (billed to them). An Anthropic
connection offers the configured Anthropic models on the person's key; an
OpenAI-compatible connection offers whatever its /models endpoint lists, asked at
most every few minutes per connection. A listing that fails offers nothing rather
than failing the page. With nothing configured the list is empty.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass

import anthropic
import openai
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta.chat.llm.capabilities import capabilities_for, label_for
from carmenta.chat.llm.clients import client_for
from carmenta.chat.llm.types import ModelCredentials, ModelError, ModelOption, Provider
from carmenta.connections import service as connections_service
from carmenta.connections.providers import registry
from carmenta.settings import Settings

logger = logging.getLogger(__name__)

MODEL_LIST_TTL_SECONDS = 300.0
# A failed listing is asked again sooner: the server may just have been restarting.
FAILED_LIST_TTL_SECONDS = 30.0
MODEL_LIST_TIMEOUT_SECONDS = 5.0
MAX_LISTED_MODELS = 100
# A local server without authentication still gets a bearer value from the client.
NO_KEY = "no-key"
CONNECTION_PROVIDERS = ("anthropic", "openai_compatible")
# Entries of a /models list that are not chat models.
_NOT_CHAT = (
    "embed",
    "whisper",
    "tts",
    "dall-e",
    "moderation",
    "davinci",
    "babbage",
    "transcribe",
    "realtime",
    "audio",
    "image",
    "sora",
    "rerank",
)


@dataclass
class _Listing:
    expires_at: float
    models: list[str]


_listings: dict[tuple[str, str], _Listing] = {}


def _listing_key(scope: str, credentials: ModelCredentials) -> tuple[str, str]:
    # A new key or address under the same connection is a new listing.
    digest = hashlib.sha256(f"{credentials.base_url}\n{credentials.api_key}".encode()).hexdigest()
    return scope, digest


def forget_model_lists() -> None:
    _listings.clear()


def _is_chat_model(name: str) -> bool:
    lowered = name.lower()
    return not any(marker in lowered for marker in _NOT_CHAT)


async def listed_models(*, scope: str, credentials: ModelCredentials) -> list[str]:
    """An OpenAI-compatible server's chat models from GET {base_url}/models, cached.

    Never raises: a server that cannot be reached or refuses the key lists nothing.
    """
    key = _listing_key(scope, credentials)
    now = time.monotonic()
    cached = _listings.get(key)
    if cached is not None and cached.expires_at > now:
        return list(cached.models)
    client = client_for("openai", credentials).with_options(
        timeout=MODEL_LIST_TIMEOUT_SECONDS, max_retries=0
    )
    try:
        names: list[str] = []
        async for model in client.models.list():
            if isinstance(model.id, str) and model.id and _is_chat_model(model.id):
                names.append(model.id)
            if len(names) >= MAX_LISTED_MODELS:
                break
        ttl = MODEL_LIST_TTL_SECONDS
    except (openai.APIError, anthropic.APIError, ValueError, TypeError) as error:
        logger.info("listing models for %s failed: %s", scope, type(error).__name__)
        names, ttl = [], FAILED_LIST_TTL_SECONDS
    names = sorted(set(names))
    _listings[key] = _Listing(now + ttl, names)
    return list(names)


def _option(
    *,
    option_id: str,
    provider: Provider,
    model: str,
    settings: Settings,
    source: str,
    account_label: str | None = None,
) -> ModelOption:
    capabilities = capabilities_for(model, settings)
    label = label_for(model, settings)
    return ModelOption(
        id=option_id,
        label=f"{label} · {account_label}" if account_label else label,
        provider=provider,
        model=model,
        vision=capabilities.vision,
        tools=capabilities.tools,
        context_tokens=capabilities.context_tokens,
        source=source,  # type: ignore[arg-type]
    )


def _environment_credentials(provider: Provider, settings: Settings) -> ModelCredentials | None:
    if provider == "anthropic":
        if settings.anthropic_api_key is None:
            return None
        return ModelCredentials(
            api_key=settings.anthropic_api_key.get_secret_value(),
            base_url=settings.anthropic_base_url,
        )
    if not settings.uses_environment_openai:
        return None
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else NO_KEY
    return ModelCredentials(api_key=key, base_url=settings.openai_base_url)


def open_environment_clients(settings: Settings) -> int:
    """The clients of the server's own model keys, opened now (on the serving loop): a
    client's first opening loads the system's certificates, a few hundred
    milliseconds that would otherwise fall on the first reply after a start."""
    opened = 0
    for provider in ("anthropic", "openai"):
        credentials = _environment_credentials(provider, settings)
        if credentials is not None:
            client_for(provider, credentials)
            opened += 1
    return opened


async def _environment_entries(
    settings: Settings,
) -> list[tuple[ModelOption, ModelCredentials]]:
    entries: list[tuple[ModelOption, ModelCredentials]] = []
    credentials = _environment_credentials("anthropic", settings)
    if credentials is not None:
        for model in settings.anthropic_model_names:
            option = _option(
                option_id=f"anthropic:{model}",
                provider="anthropic",
                model=model,
                settings=settings,
                source="environment",
            )
            entries.append((option, credentials))
    credentials = _environment_credentials("openai", settings)
    if credentials is not None:
        names = settings.openai_model_names
        if names is None:
            names = await listed_models(scope="environment", credentials=credentials)
        for model in names:
            option = _option(
                option_id=f"openai:{model}",
                provider="openai",
                model=model,
                settings=settings,
                source="environment",
            )
            entries.append((option, credentials))
    return entries


def _anthropic_connection_base_url(settings: Settings) -> str | None:
    # The address the key was checked against when it was connected.
    return registry.get_provider("anthropic", settings).endpoints.api_base


async def _connection_entries(
    *,
    session: AsyncSession,
    settings: Settings,
    owner_id: uuid.UUID,
    connection_id: uuid.UUID | None = None,
) -> list[tuple[ModelOption, ModelCredentials]]:
    entries: list[tuple[ModelOption, ModelCredentials]] = []
    connections = await connections_service.api_key_credentials(
        session=session,
        owner_id=owner_id,
        providers=CONNECTION_PROVIDERS,
        connection_id=connection_id,
    )
    for connection in connections:
        if connection.provider == "anthropic":
            provider: Provider = "anthropic"
            credentials = ModelCredentials(
                api_key=connection.api_key, base_url=_anthropic_connection_base_url(settings)
            )
            names = settings.anthropic_model_names
        else:
            provider = "openai"
            credentials = ModelCredentials(api_key=connection.api_key, base_url=connection.base_url)
            names = await listed_models(
                scope=f"connection:{connection.connection_id}", credentials=credentials
            )
        for model in names:
            option = _option(
                option_id=f"conn:{connection.connection_id}:{model}",
                provider=provider,
                model=model,
                settings=settings,
                source="connection",
                account_label=connection.account_label,
            )
            entries.append((option, credentials))
    return entries


async def environment_models(*, settings: Settings) -> list[ModelOption]:
    """The operator's models only (background work that bills no person's key)."""
    return [option for option, _ in await _environment_entries(settings)]


async def available_models(
    *, session: AsyncSession, settings: Settings, owner_id: uuid.UUID
) -> list[ModelOption]:
    """Every model this person may pick: the operator's, then their own connections'."""
    entries = await _environment_entries(settings)
    entries += await _connection_entries(session=session, settings=settings, owner_id=owner_id)
    return [option for option, _ in entries]


def _unavailable(option_id: str) -> ModelError:
    return ModelError(
        f"The model {option_id!r} is not available. Choose another model.",
        kind="unavailable",
    )


async def credentials_for(
    *, session: AsyncSession, settings: Settings, owner_id: uuid.UUID, option_id: str
) -> tuple[ModelOption, ModelCredentials]:
    """The option and the key to call it with. Raises ModelError (kind "unavailable")
    for an id that is unknown, no longer offered, or another person's connection."""
    if option_id.startswith("conn:"):
        _, _, rest = option_id.partition(":")
        raw_id, _, model = rest.partition(":")
        try:
            connection_id = uuid.UUID(raw_id)
        except ValueError:
            raise _unavailable(option_id) from None
        if not model:
            raise _unavailable(option_id)
        entries = await _connection_entries(
            session=session, settings=settings, owner_id=owner_id, connection_id=connection_id
        )
    else:
        entries = await _environment_entries(settings)
    for option, credentials in entries:
        if option.id == option_id:
            return option, credentials
    raise _unavailable(option_id)


def _preferred(options: list[ModelOption], settings: Settings) -> ModelOption | None:
    if settings.default_model:
        for option in options:
            if option.id == settings.default_model:
                return option
    return options[0] if options else None


async def default_option(
    *, session: AsyncSession, settings: Settings, owner_id: uuid.UUID
) -> ModelOption | None:
    """DEFAULT_MODEL when this person can use it, else the first available; None: none."""
    return _preferred(
        await available_models(session=session, settings=settings, owner_id=owner_id), settings
    )


async def background_model(*, settings: Settings) -> tuple[ModelOption, ModelCredentials] | None:
    """The operator's model for background work (titles, memory); None: work offline.

    DEFAULT_MODEL when it is one of the operator's, else their first model. A
    person's own key is never spent on work they did not ask for.
    """
    entries = await _environment_entries(settings)
    chosen = _preferred([option for option, _ in entries], settings)
    if chosen is None:
        return None
    return next(entry for entry in entries if entry[0].id == chosen.id)
