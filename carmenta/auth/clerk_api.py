"""Clerk's Backend API, for the one thing Carmenta asks of it: deleting a user.

`DELETE {CLERK_API_URL}/v1/users/{user_id}` with the secret key as a bearer token.
Clerk then sends `user.deleted` to the webhook, which finds nothing left to do.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

import httpx

from carmenta.errors import CarmentaError
from carmenta.settings import Settings

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 15.0


class ClerkApiError(CarmentaError):
    """Clerk did not do what was asked; the message is safe to show and log."""


async def delete_user(*, settings: Settings, external_auth_id: str) -> None:
    """Delete the Clerk user; a user Clerk no longer has counts as deleted."""
    if not settings.clerk_secret_key:
        raise ClerkApiError("Clerk is not configured (CLERK_SECRET_KEY is unset)")
    url = f"{settings.clerk_api_url.rstrip('/')}/v1/users/{quote(external_auth_id, safe='')}"
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
            response = await client.delete(
                url, headers={"Authorization": f"Bearer {settings.clerk_secret_key}"}
            )
    except httpx.HTTPError as error:
        raise ClerkApiError(
            f"Clerk could not be reached to delete the account ({type(error).__name__})"
        ) from None
    if response.status_code == 404:
        logger.info("Clerk no longer has user %s; nothing to delete there", external_auth_id)
        return
    if response.status_code >= 300:
        raise ClerkApiError(f"Clerk refused to delete the account (HTTP {response.status_code})")
