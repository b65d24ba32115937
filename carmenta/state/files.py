"""The Files page: the user's uploads, their processing status, and deletion."""

from __future__ import annotations

import asyncio
import dataclasses

import reflex as rx

from carmenta.files import browse
from carmenta.settings import get_settings
from carmenta.state.session import SessionState

# While a file is processing the list refreshes itself, for at most this long.
POLL_SECONDS = 1.5
POLL_LIMIT_SECONDS = 180


class FilesState(SessionState):
    loading: bool = True
    files: list[dict[str, str]] = []
    error: str = ""
    notice: str = ""
    pending_delete_id: str = ""
    pending_delete_name: str = ""
    _polling: bool = False

    @rx.var
    def processing_count(self) -> int:
        return sum(1 for item in self.files if item["status"] in ("uploading", "processing"))

    async def _reload(self) -> bool:
        user = await self.verified_user()
        if user is None:
            self.files = []
            return False
        cards = await browse.file_cards(owner_id=user.user_id, settings=get_settings())
        self.files = [
            {key: str(value) for key, value in dataclasses.asdict(card).items()} for card in cards
        ]
        return True

    @rx.event
    async def load(self):
        self.loading = True
        self.error = ""
        try:
            await self._reload()
        except Exception:  # noqa: BLE001 - the page shows the failure instead of breaking
            self.error = "Your files could not be loaded. Try again in a moment."
        self.loading = False
        if self.processing_count:
            return FilesState.poll_while_processing
        return None

    @rx.event
    async def uploaded(self, info: dict):
        self.notice = f"{info.get('name', 'File')} uploaded. Processing…"
        await self._reload()
        return FilesState.poll_while_processing

    @rx.event(background=True)
    async def poll_while_processing(self):
        async with self:
            if self._polling:
                return
            self._polling = True
        try:
            waited = 0.0
            while waited < POLL_LIMIT_SECONDS:
                await asyncio.sleep(POLL_SECONDS)
                waited += POLL_SECONDS
                async with self:
                    await self._reload()
                    if not self.processing_count:
                        self.notice = ""
                        break
        finally:
            async with self:
                self._polling = False

    @rx.event
    def ask_delete(self, file_id: str, name: str):
        self.pending_delete_id = file_id
        self.pending_delete_name = name

    @rx.event
    def cancel_delete(self):
        self.pending_delete_id = ""
        self.pending_delete_name = ""

    @rx.event
    async def confirm_delete(self):
        file_id, name = self.pending_delete_id, self.pending_delete_name
        self.cancel_delete()
        user = await self.verified_user()
        if user is None or not file_id:
            return
        if await browse.remove_file(owner_id=user.user_id, file_id=file_id):
            self.notice = f"{name} was deleted."
        else:
            self.error = "That file no longer exists."
        await self._reload()
