"""The Files page: the user's uploads, their processing and knowledge-base status,
replacing and deleting them."""

from __future__ import annotations

import asyncio
import dataclasses

import reflex as rx

from carmenta.files import browse
from carmenta.knowledge import file_browse
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
    replacing_id: str = ""
    replacing_name: str = ""
    _polling: bool = False

    @rx.var
    def processing_count(self) -> int:
        return sum(1 for item in self.files if item["status"] in ("uploading", "processing"))

    @rx.var
    def knowledge_busy_count(self) -> int:
        return sum(1 for item in self.files if item.get("knowledge_state") in ("waiting", "adding"))

    @rx.var
    def replace_endpoint(self) -> str:
        return f"/files/{self.replacing_id}/replace" if self.replacing_id else ""

    def _busy(self) -> bool:
        return bool(self.processing_count or self.knowledge_busy_count)

    async def _reload(self) -> bool:
        user = await self.verified_user()
        if user is None:
            self.files = []
            return False
        cards = await browse.file_cards(owner_id=user.user_id, settings=get_settings())
        knowledge = await file_browse.knowledge_fields(owner_id=user.user_id)
        self.files = [
            {
                **{key: str(value) for key, value in dataclasses.asdict(card).items()},
                **knowledge.get(card.id, file_browse.empty_fields()),
            }
            for card in cards
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
        if self._busy():
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
                    if not self._busy():
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

    @rx.event
    async def add_to_knowledge(self, file_id: str, name: str):
        user = await self.verified_user()
        if user is None:
            return None
        problem = await file_browse.add_to_knowledge(owner_id=user.user_id, file_id=file_id)
        if problem:
            self.error = problem
        else:
            self.error = ""
            self.notice = f"Adding {name} to your knowledge base…"
        await self._reload()
        return FilesState.poll_while_processing

    @rx.event
    async def remove_from_knowledge(self, file_id: str, name: str):
        user = await self.verified_user()
        if user is None:
            return
        if await file_browse.remove_from_knowledge(owner_id=user.user_id, file_id=file_id):
            self.notice = f"{name} was removed from your knowledge base; the file stays."
        else:
            self.error = f"{name} was not in your knowledge base."
        await self._reload()

    @rx.event
    def ask_replace(self, file_id: str, name: str):
        self.replacing_id = file_id
        self.replacing_name = name

    @rx.event
    def cancel_replace(self):
        self.replacing_id = ""
        self.replacing_name = ""

    @rx.event
    def replace_open_changed(self, is_open: bool):
        # Escape or a click outside closes the dialog.
        if not is_open:
            self.cancel_replace()

    @rx.event
    async def replaced(self, info: dict):
        name = self.replacing_name
        self.cancel_replace()
        self.error = ""
        self.notice = f"{name} was replaced by {info.get('name', 'the new file')}. Processing…"
        await self._reload()
        return FilesState.poll_while_processing
