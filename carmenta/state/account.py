"""The account page: profile, signed-in sessions, data export and account deletion."""

from __future__ import annotations

import asyncio
import logging

import reflex as rx

from carmenta.accounts import service as accounts_service
from carmenta.auth import service as auth_service
from carmenta.exports import service as exports_service
from carmenta.settings import get_settings
from carmenta.state.session import SIGN_IN_PATH, SessionState

logger = logging.getLogger(__name__)

CONFIRMATION_PHRASE = accounts_service.CONFIRMATION_PHRASE


def _describe_device(user_agent: str | None) -> str:
    agent = user_agent or ""
    browser = next(
        (name for name in ("Edg", "Firefox", "Chrome", "Safari") if name in agent), "Browser"
    )
    system = next(
        (
            name
            for name in ("Android", "iPhone", "iPad", "Mac OS", "Windows", "Linux")
            if name in agent
        ),
        "unknown system",
    )
    return f"{'Edge' if browser == 'Edg' else browser} on {system.replace('Mac OS', 'macOS')}"


class AccountState(SessionState):
    loading: bool = True
    sessions: list[dict[str, str | bool]] = []
    message: str = ""
    error: str = ""

    async def _refresh(self, user: auth_service.AuthenticatedUser) -> None:
        infos = await auth_service.sessions_of(user=user)
        self.sessions = [
            {
                "id": str(info.id),
                "device": _describe_device(info.user_agent),
                "started": info.created_at.strftime("%d %b %Y, %H:%M UTC"),
                "address": info.ip_address or "unknown address",
                "current": str(info.id) == user.session_id,
            }
            for info in infos
        ]

    @rx.event
    async def load(self):
        self.loading = True
        self.message = self.error = ""
        user = await self.verified_user()
        if user is None:
            self.sessions = []
            return
        await self._refresh(user)
        self.loading = False

    @rx.event
    async def revoke_session(self, session_id: str):
        user = await self.verified_user()
        if user is None:
            return
        if await auth_service.revoke_session_of(user=user, session_id=session_id):
            self.message = "That session is signed out."
        else:
            self.error = "That session no longer exists."
        await self._refresh(user)

    @rx.event
    async def revoke_other_sessions(self):
        user = await self.verified_user()
        if user is None:
            return
        count = await auth_service.revoke_other_sessions_of(user=user)
        self.message = f"Signed out of {count} other session{'s' if count != 1 else ''}."
        await self._refresh(user)

    @rx.event
    async def save_profile(self, form_data: dict):
        user = await self.verified_user()
        if user is None:
            return
        problem = await auth_service.rename(
            user=user, display_name=str(form_data.get("display_name", ""))
        )
        if problem:
            self.error = problem
            return
        await self.verified_user()
        self.error = ""
        self.message = "Your name is saved."


def _size(size_bytes: int) -> str:
    if size_bytes >= 1024 * 1024:
        return f"{size_bytes / (1024 * 1024):.1f} MB"
    return f"{max(1, round(size_bytes / 1024))} KB"


EXPORT_POLL_SECONDS = 1.0
EXPORT_POLL_LIMIT_SECONDS = 30 * 60


class DataExportState(SessionState):
    """Export my data: ask, watch the job's progress, download the zip."""

    # "", "building", "ready" or "failed".
    export_status: str = ""
    export_percent: int = 0
    export_step: str = ""
    export_error: str = ""
    export_details: str = ""
    export_url: str = ""
    export_loading: bool = True
    _polling: bool = False

    async def _refresh(self) -> bool:
        """Reload the latest export; True while it is still being built."""
        user = await self.verified_user()
        if user is None:
            return False
        standing = await exports_service.export_standing(
            owner_id=user.user_id, settings=get_settings()
        )
        self.export_loading = False
        view = standing.export
        if view is None:
            self.export_status = ""
            self.export_url = ""
            return False
        self.export_status = view.status.value
        self.export_percent = view.percent
        self.export_step = view.step or ""
        self.export_error = view.error or ""
        self.export_url = standing.download_url or ""
        self.export_details = (
            f"{_size(view.size_bytes)}, available until "
            f"{view.expires_at.strftime('%d %b %Y, %H:%M UTC')}"
        )
        return view.building

    @rx.event
    async def load_export(self):
        self.export_loading = True
        if await self._refresh():
            return DataExportState.follow_export
        return None

    @rx.event
    async def export_data(self):
        user = await self.verified_user()
        if user is None:
            return None
        try:
            await exports_service.start_export(owner_id=user.user_id, settings=get_settings())
        except Exception:
            logger.exception("an export could not be started for user %s", user.user_id)
            self.export_status = "failed"
            self.export_error = exports_service.FAILED_MESSAGE
            return None
        await self._refresh()
        return DataExportState.follow_export

    @rx.event(background=True)
    async def follow_export(self):
        async with self:
            if self._polling:
                return
            self._polling = True
        try:
            waited = 0.0
            while waited < EXPORT_POLL_LIMIT_SECONDS:
                await asyncio.sleep(EXPORT_POLL_SECONDS)
                waited += EXPORT_POLL_SECONDS
                async with self:
                    if not await self._refresh():
                        break
        finally:
            async with self:
                self._polling = False


class DeleteAccountState(SessionState):
    """Delete my account: a typed confirmation (and the password of built-in accounts)."""

    delete_open: bool = False
    delete_error: str = ""
    deleting: bool = False

    @rx.event
    def set_delete_open(self, value: bool):
        self.delete_open = value
        self.delete_error = ""

    @rx.event
    async def delete_account(self, form_data: dict):
        user = await self.verified_user()
        if user is None:
            return None
        self.deleting = True
        settings = get_settings()
        problem = await accounts_service.delete_own_account(
            user=user,
            settings=settings,
            confirmation=str(form_data.get("confirmation", "")),
            password=str(form_data.get("password", "")) or None,
            ip_address=self.router.session.client_ip or None,
        )
        self.deleting = False
        if problem:
            self.delete_error = problem
            return None
        self.delete_open = False
        self.signed_in = False
        self.user_email = self.user_name = ""
        self.is_admin = False
        self._clerk_token = ""
        if settings.uses_clerk:
            return rx.call_script(
                "(window.Clerk ? window.Clerk.signOut() : Promise.resolve())"
                f".finally(() => window.location.assign('{SIGN_IN_PATH}?deleted=1'))"
            )
        return rx.call_script(
            "fetch('/auth/sign-out', {method: 'POST', credentials: 'same-origin'})"
            f".finally(() => window.location.assign('{SIGN_IN_PATH}?deleted=1'))"
        )
