"""POST /webhooks/slack and POST /webhooks/github: providers ending Carmenta's access.

Slack: `url_verification` is answered with its challenge (after the signature is
checked); `tokens_revoked` and `app_uninstalled` disconnect the matching connections.
GitHub: `github_app_authorization` (`revoked`) disconnects that user's account.

Answers: 200 {"status": processed|duplicate|ignored} once a delivery is applied (or
was already, or is of no interest); 401 for a bad, missing or stale signature; 400 for
a signed body that is not an event; 413 for an oversized body; 503 when the secret
is not configured; 500 when applying failed, so the provider retries. Bodies and
signatures are never logged.
"""

from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from carmenta.connections import webhooks
from carmenta.db import session_scope
from carmenta.settings import get_settings

logger = logging.getLogger(__name__)

# Both providers' events are a few kilobytes.
MAX_BODY_BYTES = 1024 * 1024


class _BodyTooLarge(Exception):
    pass


def _error(message: str, status_code: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status_code)


async def _read_body(request: Request) -> bytes:
    # Content-Length can be absent (chunked) or wrong, so the stream is counted too.
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def _body_or_error(request: Request) -> bytes | JSONResponse:
    try:
        return await _read_body(request)
    except _BodyTooLarge:
        return _error("The webhook body is too large", 413)
    except ClientDisconnect:
        return _error("The request was not received completely", 400)


async def slack_webhook(request: Request) -> JSONResponse:
    secret = get_settings().slack_signing_secret
    if not secret:
        return _error("Slack webhooks are not configured", 503)
    body = await _body_or_error(request)
    if isinstance(body, JSONResponse):
        return body
    try:
        webhooks.verify_slack_request(
            secret=secret,
            body=body,
            timestamp=request.headers.get("x-slack-request-timestamp"),
            signature=request.headers.get("x-slack-signature"),
        )
    except webhooks.WebhookSignatureError as error:
        logger.warning("rejected a Slack request: %s", error)
        return _error("Invalid request signature", 401)

    try:
        payload = webhooks.parse_json_object(body)
        challenge = webhooks.slack_challenge(payload)
        if challenge is not None:
            return JSONResponse({"challenge": challenge})
        async with session_scope() as session:
            outcome = await webhooks.handle_slack_event(session=session, payload=payload)
    except webhooks.MalformedWebhookError as error:
        logger.warning("a Slack event is malformed: %s", error)
        return _error("The body is not a Slack event Carmenta can read", 400)
    except Exception:
        logger.exception("a Slack event could not be applied; Slack will retry")
        return _error("The event could not be processed", 500)
    logger.info("Slack event %s: %s", payload.get("event_id"), outcome.value)
    return JSONResponse({"status": outcome.value})


async def github_webhook(request: Request) -> JSONResponse:
    secret = get_settings().github_webhook_secret
    if not secret:
        return _error("GitHub webhooks are not configured", 503)
    body = await _body_or_error(request)
    if isinstance(body, JSONResponse):
        return body
    try:
        webhooks.verify_github_delivery(
            secret=secret, body=body, signature=request.headers.get("x-hub-signature-256")
        )
    except webhooks.WebhookSignatureError as error:
        logger.warning("rejected a GitHub delivery: %s", error)
        return _error("Invalid webhook signature", 401)

    delivery_id = (request.headers.get("x-github-delivery") or "").strip()
    if not delivery_id or len(delivery_id) > 200:
        return _error("The delivery has no X-GitHub-Delivery id", 400)
    try:
        payload = webhooks.parse_json_object(body)
        async with session_scope() as session:
            outcome = await webhooks.handle_github_event(
                session=session,
                delivery_id=delivery_id,
                event_name=request.headers.get("x-github-event"),
                payload=payload,
            )
    except webhooks.MalformedWebhookError as error:
        logger.warning("GitHub delivery %s is malformed: %s", delivery_id, error)
        return _error("The body is not a GitHub event Carmenta can read", 400)
    except Exception:
        logger.exception("GitHub delivery %s could not be applied", delivery_id)
        return _error("The delivery could not be processed", 500)
    logger.info("GitHub delivery %s: %s", delivery_id, outcome.value)
    return JSONResponse({"status": outcome.value})
