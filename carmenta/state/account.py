"""The account page: profile and the signed-in sessions of built-in accounts."""

from __future__ import annotations

import reflex as rx

from carmenta.auth import service as auth_service
from carmenta.state.session import SessionState


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
