"""Providers telling Carmenta that access ended: Slack and GitHub webhooks.

Slack signs each request with HMAC-SHA256 over `v0:{timestamp}:{raw body}` (header
`X-Slack-Signature: v0=<hex>`, timestamp in `X-Slack-Request-Timestamp`, at most five
minutes off). `tokens_revoked` lists revoked user tokens by user id for one team;
`app_uninstalled` ends every token of the team. The two may arrive in either order.

GitHub signs each delivery with HMAC-SHA256 over the raw body
(`X-Hub-Signature-256: sha256=<hex>`). `github_app_authorization` with action
`revoked` means a user took back the app's authorization.

Deliveries are deduplicated in `webhook_events` (Slack's `event_id`, GitHub's
`X-GitHub-Delivery`) in the same transaction as their effect, so a replay changes
nothing and a delivery whose handling failed is retried in full. Handling is a few
indexed deletes, well within the seconds Slack and GitHub wait for an answer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta.auth.clerk_webhooks import WebhookOutcome, record_delivery
from carmenta.connections import service as connections_service
from carmenta.errors import CarmentaError

logger = logging.getLogger(__name__)

SLACK_SOURCE = "slack"
GITHUB_SOURCE = "github"
SLACK_MAX_AGE_SECONDS = 5 * 60


class WebhookSignatureError(CarmentaError):
    """The request is not signed with the configured secret, or is too old."""


class MalformedWebhookError(CarmentaError, ValueError):
    """A correctly signed request whose body is not an event we can read."""


def _hmac_sha256_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify_slack_request(
    *,
    secret: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    now: float | None = None,
) -> None:
    """Check Slack's v0 signature and freshness. Raises WebhookSignatureError."""
    if not timestamp or not signature:
        raise WebhookSignatureError("the request is not signed")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookSignatureError("the request timestamp is not a number") from None
    if abs((now if now is not None else time.time()) - sent_at) > SLACK_MAX_AGE_SECONDS:
        raise WebhookSignatureError("the request is older than five minutes (or from the future)")
    expected = "v0=" + _hmac_sha256_hex(secret, b"v0:" + timestamp.encode("ascii") + b":" + body)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace")):
        raise WebhookSignatureError("the signature does not match")


def verify_github_delivery(*, secret: str, body: bytes, signature: str | None) -> None:
    """Check GitHub's X-Hub-Signature-256. Raises WebhookSignatureError."""
    if not signature:
        raise WebhookSignatureError("the delivery is not signed")
    expected = "sha256=" + _hmac_sha256_hex(secret, body)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace")):
        raise WebhookSignatureError("the signature does not match")


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError:
        raise MalformedWebhookError("the body is not JSON") from None
    if not isinstance(payload, dict):
        raise MalformedWebhookError("the body is not a JSON object")
    return payload


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    return None


def slack_challenge(payload: Mapping[str, Any]) -> str | None:
    """The challenge to echo when Slack verifies the request URL; None otherwise."""
    if payload.get("type") != "url_verification":
        return None
    challenge = _text(payload.get("challenge"))
    if challenge is None:
        raise MalformedWebhookError("url_verification without a challenge")
    return challenge


async def handle_slack_event(
    *, session: AsyncSession, payload: Mapping[str, Any]
) -> WebhookOutcome:
    """Apply one verified Events API callback in the caller's transaction."""
    if payload.get("type") != "event_callback":
        return WebhookOutcome.ignored
    event_id = _text(payload.get("event_id"))
    event = payload.get("event")
    if event_id is None or not isinstance(event, dict):
        raise MalformedWebhookError("an event callback without event_id or event")
    event_type = _text(event.get("type"))
    team_id = _text(payload.get("team_id")) or _text(payload.get("enterprise_id"))
    account_ids: list[str] = []
    if event_type == "tokens_revoked":
        tokens = event.get("tokens")
        user_ids = tokens.get("oauth") if isinstance(tokens, dict) else None
        if team_id is None or not isinstance(user_ids, list):
            raise MalformedWebhookError("tokens_revoked without a team or user ids")
        # Only user ("oauth") tokens: Carmenta never holds a bot token.
        account_ids = [f"{team_id}:{user_id}" for user_id in user_ids if _text(user_id)]
    elif event_type == "app_uninstalled" and team_id is None:
        raise MalformedWebhookError("app_uninstalled without a team")

    if not await record_delivery(
        session=session, source=SLACK_SOURCE, event_id=event_id, event_type=event_type
    ):
        return WebhookOutcome.duplicate

    if event_type == "tokens_revoked":
        if account_ids:
            removed = await connections_service.disconnect_matching(
                session=session, provider_id="slack", account_ids=account_ids, source="provider"
            )
            logger.info(
                "Slack revoked %d user token(s); %d connection(s) ended", len(account_ids), removed
            )
        return WebhookOutcome.processed
    if event_type == "app_uninstalled":
        removed = await connections_service.disconnect_matching(
            session=session,
            provider_id="slack",
            account_id_prefix=f"{team_id}:",
            source="provider",
        )
        logger.info("Slack app uninstalled from a team; %d connection(s) ended", removed)
        return WebhookOutcome.processed
    return WebhookOutcome.ignored


async def handle_github_event(
    *,
    session: AsyncSession,
    delivery_id: str,
    event_name: str | None,
    payload: Mapping[str, Any],
) -> WebhookOutcome:
    """Apply one verified GitHub delivery in the caller's transaction."""
    action = _text(payload.get("action"))
    revoked_user: str | None = None
    if event_name == "github_app_authorization" and action == "revoked":
        sender = payload.get("sender")
        user_id = sender.get("id") if isinstance(sender, dict) else None
        if not isinstance(user_id, int) or isinstance(user_id, bool):
            raise MalformedWebhookError("github_app_authorization without a sender id")
        revoked_user = str(user_id)

    event_type = f"{event_name}.{action}" if event_name and action else event_name
    if not await record_delivery(
        session=session, source=GITHUB_SOURCE, event_id=delivery_id, event_type=event_type
    ):
        return WebhookOutcome.duplicate
    if revoked_user is None:
        return WebhookOutcome.ignored
    removed = await connections_service.disconnect_matching(
        session=session, provider_id="github", account_ids=[revoked_user], source="provider"
    )
    logger.info("GitHub authorization revoked by a user; %d connection(s) ended", removed)
    return WebhookOutcome.processed
