"""What the Connections page shows and does, each in a transaction of its own."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from carmenta import db
from carmenta.connections import api_keys
from carmenta.connections import service as connections_service
from carmenta.connections.providers import registry
from carmenta.settings import Settings

STATUS_LABELS = {
    "connected": "Connected",
    "needs_reauth": "Needs reconnect",
    "error": "Error",
    "revoked": "Revoked",
}


EVENT_LABELS = {
    "connected": "Connected",
    "reconnected": "Reconnected",
    "refreshed": "Access renewed",
    "refresh_failed": "Renewal failed",
    "needs_reauth": "Needs reconnect",
    "revoked": "Revoked",
    "disconnected": "Disconnected",
}
SOURCE_LABELS = {"user": "by you", "system": "automatically", "provider": "by the provider"}
HISTORY_LENGTH = 5


@dataclass
class AccountItem:
    id: str = ""
    label: str = ""
    is_default: bool = False
    status: str = ""
    status_label: str = ""
    detail: str = ""
    # The latest entries of the connection's audit trail, newest first.
    history: list[str] = field(default_factory=list)


@dataclass
class ProviderCard:
    id: str = ""
    name: str = ""
    description: str = ""
    icon: str = "plug"
    logo: str = ""
    auth_type: str = "oauth"
    configured: bool = False
    needs_base_url: bool = False
    api_key_hint: str = ""
    setup_hint: str = ""
    status: str = ""
    status_label: str = ""
    connect_url: str = ""
    accounts: list[AccountItem] = field(default_factory=list)


def _setup_hint(provider_id: str) -> str:
    prefix = provider_id.upper()
    needed = f"{prefix}_CLIENT_ID and {prefix}_CLIENT_SECRET"
    if provider_id == "oidc":
        needed = f"OIDC_ISSUER, {needed}"
    return f"Set {needed} on the server to enable it."


def _aggregate_status(accounts: list[AccountItem]) -> str:
    for status in ("needs_reauth", "error", "connected"):
        if any(account.status == status for account in accounts):
            return status
    return ""


async def provider_cards(*, owner_id: uuid.UUID, settings: Settings) -> list[ProviderCard]:
    async with db.session_scope() as session:
        views = await connections_service.list_connections(session=session, owner_id=owner_id)
        events = await connections_service.connection_events(
            session=session, owner_id=owner_id, limit=HISTORY_LENGTH * max(1, len(views))
        )
    history: dict[str, list[str]] = {}
    for event in events:
        if event.connection_id is None:
            continue
        entries = history.setdefault(str(event.connection_id), [])
        if len(entries) < HISTORY_LENGTH:
            when = event.created_at.strftime("%d %b %Y, %H:%M UTC")
            what = EVENT_LABELS.get(event.event, event.event)
            who = SOURCE_LABELS.get(event.source, event.source)
            entries.append(f"{when} · {what} {who}")
    cards = []
    for provider in registry.all_providers(settings):
        accounts = [
            AccountItem(
                id=str(view.id),
                label=view.account_label,
                is_default=view.is_default,
                status=view.status,
                status_label=STATUS_LABELS.get(view.status, view.status),
                detail=view.last_error or "",
                history=history.get(str(view.id), []),
            )
            for view in views
            if view.provider == provider.id
        ]
        status = _aggregate_status(accounts)
        cards.append(
            ProviderCard(
                id=provider.id,
                name=provider.name,
                description=provider.description,
                icon=provider.icon,
                logo=provider.logo or "",
                auth_type=provider.auth_type,
                configured=registry.is_configured(provider, settings),
                needs_base_url=provider.needs_base_url,
                api_key_hint=provider.api_key_hint,
                setup_hint=_setup_hint(provider.id) if provider.auth_type == "oauth" else "",
                status=status,
                status_label=STATUS_LABELS.get(status, ""),
                connect_url=f"/connections/{provider.id}/authorize?return=/connections",
                accounts=accounts,
            )
        )
    return cards


def _parse(connection_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(connection_id)
    except (ValueError, TypeError):
        return None


async def make_default(*, owner_id: uuid.UUID, connection_id: str) -> bool:
    parsed = _parse(connection_id)
    if parsed is None:
        return False
    async with db.session_scope() as session:
        return await connections_service.set_default(
            session=session, owner_id=owner_id, connection_id=parsed
        )


async def remove(*, owner_id: uuid.UUID, connection_id: str) -> bool:
    parsed = _parse(connection_id)
    if parsed is None:
        return False
    async with db.session_scope() as session:
        return await connections_service.disconnect(
            session=session, owner_id=owner_id, connection_id=parsed
        )


async def check(*, owner_id: uuid.UUID, connection_id: str) -> str | None:
    """None when the connection works, else what is wrong in plain words."""
    parsed = _parse(connection_id)
    if parsed is None:
        return "That connection no longer exists."
    return await connections_service.test_connection(owner_id=owner_id, connection_id=parsed)


def key_problem(*, provider_id: str, api_key: str, settings: Settings) -> str | None:
    try:
        provider = registry.get_provider(provider_id, settings)
    except registry.UnknownProvider:
        return "Unknown service."
    return api_keys.api_key_format_problem(provider, api_key)


async def add_key(
    *,
    owner_id: uuid.UUID,
    provider_id: str,
    api_key: str,
    base_url: str | None,
    settings: Settings,
) -> str | None:
    """Validate and save an API key; None when saved, else the reason it was refused."""
    try:
        provider = registry.get_provider(provider_id, settings)
    except registry.UnknownProvider:
        return "Unknown service."
    if provider.auth_type != "api_key":
        return "This service connects through its own sign-in page."
    try:
        async with db.session_scope() as session:
            await api_keys.add_api_key(
                session=session,
                owner_id=owner_id,
                provider=provider,
                api_key=api_key,
                base_url=base_url,
                settings=settings,
            )
    except api_keys.ApiKeyRejected as error:
        return str(error)
    return None
