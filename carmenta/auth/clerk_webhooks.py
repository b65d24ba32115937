"""Clerk's user webhooks: verify the Svix signature, apply each delivery once.

Clerk sends `user.created`, `user.updated` and `user.deleted` through Svix, which
retries until it gets a 2xx. A delivery's `svix-id` is recorded in `webhook_events`
in the same transaction as its effect: a replay is recognised and changes nothing,
and a delivery whose handling failed is not recorded, so its retry is applied.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession
from svix.webhooks import Webhook, WebhookVerificationError

from carmenta.auth.models import WebhookEvent
from carmenta.errors import CarmentaError, ConfigurationError
from carmenta.knowledge import service as knowledge_service
from carmenta.users import service as users

logger = logging.getLogger(__name__)

CLERK_PROVIDER = "clerk"
WEBHOOK_SOURCE = "clerk"
SVIX_HEADERS = ("svix-id", "svix-timestamp", "svix-signature")


class WebhookSignatureError(CarmentaError):
    """The delivery is not signed with the configured secret, or is too old or new."""


class MalformedWebhookError(CarmentaError, ValueError):
    """A correctly signed delivery whose body is not a Clerk event we can read."""


class WebhookOutcome(StrEnum):
    processed = "processed"
    duplicate = "duplicate"
    ignored = "ignored"


@dataclass(frozen=True, slots=True)
class ClerkUserProfile:
    external_auth_id: str
    email: str | None
    display_name: str | None
    image_url: str | None
    is_admin: bool


def verify_delivery(*, secret: str, body: bytes, headers: Mapping[str, str]) -> str:
    """Check the Svix signature of `body` (the raw bytes); return the delivery's svix-id.

    Svix rejects timestamps more than five minutes away from now, and accepts a
    signature header listing several signatures (secret rotation) if one matches.
    Raises ConfigurationError when `secret` is not a Svix secret.
    """
    try:
        webhook = Webhook(secret)
    except Exception as error:  # the secret's text is never part of the message
        raise ConfigurationError(
            "CLERK_WEBHOOK_SECRET is not a valid Svix signing secret (whsec_...)"
        ) from error
    svix_headers = {name: headers[name] for name in SVIX_HEADERS if name in headers}
    try:
        webhook.verify(body, svix_headers)
    # ValueError: a malformed signature list, bad base64 or a body that is not UTF-8.
    except (WebhookVerificationError, ValueError) as error:
        raise WebhookSignatureError("the webhook signature could not be verified") from error
    return svix_headers["svix-id"]


def parse_event(body: bytes) -> dict[str, Any]:
    """The event in a verified body: a JSON object with a string `type`."""
    try:
        event = json.loads(body)
    except ValueError as error:
        raise MalformedWebhookError("the webhook body is not JSON") from error
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise MalformedWebhookError("the webhook body is not a Clerk event")
    return event


def _text(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _primary_email(data: Mapping[str, Any]) -> str | None:
    addresses = [
        address for address in data.get("email_addresses") or [] if isinstance(address, dict)
    ]
    primary_id = data.get("primary_email_address_id")
    for address in addresses:
        if primary_id is not None and address.get("id") == primary_id:
            return _text(address.get("email_address"))
    # No primary marked (or it is missing from the list): the first address will do.
    for address in addresses:
        email = _text(address.get("email_address"))
        if email:
            return email
    return None


def _display_name(data: Mapping[str, Any]) -> str | None:
    names = [_text(data.get("first_name")), _text(data.get("last_name"))]
    full_name = " ".join(name for name in names if name)
    return full_name or _text(data.get("username"))


def profile_from_clerk_user(data: object) -> ClerkUserProfile:
    """The fields Carmenta keeps, from the `data` of a user.created/updated event."""
    if not isinstance(data, dict):
        raise MalformedWebhookError("the event has no user data")
    external_auth_id = _text(data.get("id"))
    if external_auth_id is None:
        raise MalformedWebhookError("the event's user has no id")
    metadata = data.get("public_metadata")
    role = metadata.get("role") if isinstance(metadata, dict) else None
    return ClerkUserProfile(
        external_auth_id=external_auth_id,
        email=_primary_email(data),
        display_name=_display_name(data),
        image_url=_text(data.get("image_url")) or _text(data.get("profile_image_url")),
        is_admin=role == "admin",
    )


async def record_delivery(
    *, session: AsyncSession, source: str, event_id: str, event_type: str | None
) -> bool:
    """Note a delivery as handled; False if it already was (a replay).

    A concurrent delivery of the same id waits here until the first one's
    transaction ends, then sees it as a replay (or proceeds if that one failed).
    """
    statement = (
        insert(WebhookEvent)
        .values(source=source, event_id=event_id, event_type=event_type)
        .on_conflict_do_nothing(index_elements=["source", "event_id"])
        .returning(col(WebhookEvent.id))
    )
    result = await session.exec(statement)
    return result.first() is not None


async def handle_clerk_event(
    *, session: AsyncSession, event_id: str, event: Mapping[str, Any]
) -> WebhookOutcome:
    """Apply one verified Clerk event in the caller's transaction (the caller commits).

    Raises MalformedWebhookError when a user event lacks the user's id; anything
    raised means nothing of this delivery may be committed.
    """
    event_type = event.get("type")
    if not isinstance(event_type, str):
        raise MalformedWebhookError("the webhook body is not a Clerk event")
    # Checked before recording, so a malformed delivery is not remembered as seen.
    data = event.get("data")
    profile = (
        profile_from_clerk_user(data) if event_type in ("user.created", "user.updated") else None
    )
    deleted_id = _deleted_user_id(data) if event_type == "user.deleted" else None

    if not await record_delivery(
        session=session, source=WEBHOOK_SOURCE, event_id=event_id, event_type=event_type
    ):
        return WebhookOutcome.duplicate

    if profile is not None:
        if await users.was_deleted(session=session, external_auth_id=profile.external_auth_id):
            # A late delivery about a deleted user must not bring the account back.
            return WebhookOutcome.ignored
        user = await users.upsert_external_user(
            session=session,
            external_auth_id=profile.external_auth_id,
            auth_provider=CLERK_PROVIDER,
            email=profile.email,
            display_name=profile.display_name,
            image_url=profile.image_url,
            is_admin=profile.is_admin,
        )
        if event_type == "user.created":
            # Existing profile documents are kept; only missing ones are added.
            await knowledge_service.seed_profile(
                session=session, owner_id=user.id, display_name=profile.display_name or ""
            )
        return WebhookOutcome.processed
    if deleted_id is not None:
        await _delete_clerk_user(session=session, external_auth_id=deleted_id)
        return WebhookOutcome.processed
    return WebhookOutcome.ignored


def _deleted_user_id(data: object) -> str:
    external_auth_id = _text(data.get("id")) if isinstance(data, dict) else None
    if external_auth_id is None:
        raise MalformedWebhookError("the deleted user has no id")
    return external_auth_id


async def _delete_clerk_user(*, session: AsyncSession, external_auth_id: str) -> None:
    user = await users.get_user_by_external_id(session=session, external_auth_id=external_auth_id)
    # Only Clerk's own users: a built-in account can never be removed from Clerk.
    if user is None:
        # Never seen here yet: remember the id so a token still in flight cannot create it.
        await users.remember_deleted(session=session, external_auth_id=external_auth_id)
        logger.info("Clerk deleted a user Carmenta does not know; nothing to delete")
        return
    if user.auth_provider != CLERK_PROVIDER:
        logger.info("a Clerk deletion named a built-in account; nothing to delete")
        return
    from carmenta.accounts import service as accounts_service

    await accounts_service.delete_account(session=session, user_id=user.id)
    logger.info("deleted the account of user %s at Clerk's request", user.id)
