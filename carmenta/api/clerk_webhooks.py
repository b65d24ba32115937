"""POST /webhooks/clerk: Clerk's user events, signed by Svix.

Answers: 200 once the event is applied (or was already, or is of no interest), so
Svix stops; 401 for a bad signature; 400 for a signed body that is not an event;
413 for an oversized body; 503 when no secret is configured; 500 when applying
failed, so Svix retries. The body and signature are never logged.
"""

from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from carmenta.auth import clerk_webhooks

# Imported for their account-cleanup hooks: a deleted user's files and service tokens.
from carmenta.connections import service as connections_service  # noqa: F401
from carmenta.db import session_scope
from carmenta.errors import ConfigurationError
from carmenta.files import service as files_service  # noqa: F401
from carmenta.settings import get_settings

logger = logging.getLogger(__name__)

# Clerk's user events are a few kilobytes; anything near this is not one of them.
MAX_BODY_BYTES = 1024 * 1024


class _BodyTooLarge(Exception):
    pass


def _error(message: str, status_code: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status_code)


async def _read_body(request: Request, limit: int) -> bytes:
    # Content-Length can be absent (chunked) or wrong, so the stream is counted too.
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def clerk_webhook(request: Request) -> JSONResponse:
    secret = get_settings().clerk_webhook_secret
    if not secret:
        return _error("Clerk webhooks are not configured", 503)
    try:
        body = await _read_body(request, MAX_BODY_BYTES)
    except _BodyTooLarge:
        return _error("The webhook body is too large", 413)
    except ClientDisconnect:
        return _error("The request was not received completely", 400)

    try:
        event_id = clerk_webhooks.verify_delivery(secret=secret, body=body, headers=request.headers)
    except ConfigurationError as error:
        logger.error("%s", error)
        return _error("Clerk webhooks are not configured", 503)
    except clerk_webhooks.WebhookSignatureError:
        logger.warning("rejected a Clerk webhook whose signature did not verify")
        return _error("Invalid webhook signature", 401)

    try:
        event = clerk_webhooks.parse_event(body)
        async with session_scope() as session:
            outcome = await clerk_webhooks.handle_clerk_event(
                session=session, event_id=event_id, event=event
            )
    except clerk_webhooks.MalformedWebhookError as error:
        logger.warning("Clerk webhook %s is malformed: %s", event_id, error)
        return _error("The webhook body is not a valid Clerk event", 400)
    except Exception:
        logger.exception("Clerk webhook %s could not be applied; Svix will retry", event_id)
        return _error("The webhook could not be processed", 500)

    logger.info("Clerk webhook %s (%s): %s", event_id, event.get("type"), outcome.value)
    return JSONResponse({"status": outcome.value})
