"""The Memory page: what the assistant keeps about its user, and changing it."""

from __future__ import annotations

import reflex as rx

from carmenta.memory import browse
from carmenta.memory.browse import MemoryCard, MemoryRefused
from carmenta.memory.service import MemoryError as MemoryInputError
from carmenta.state.session import SessionState

UNEXPECTED = "Something went wrong on our side; nothing was changed. Try again in a moment."
REFUSALS = (MemoryRefused, MemoryInputError)


class MemoryState(SessionState):
    loading: bool = True
    load_error: str = ""
    error: str = ""
    notice: str = ""
    memories: list[MemoryCard] = []

    query: str = ""
    searching: bool = False
    searched: bool = False

    adding: bool = False
    add_error: str = ""
    # A new key empties the add form after a success (and only then).
    add_form_key: int = 0

    editing_id: str = ""
    edit_error: str = ""

    pending_delete_id: str = ""
    pending_delete_text: str = ""

    async def _reload(self, user_id) -> None:
        self.memories = await browse.memory_cards(owner_id=user_id)
        self.searched = False

    @rx.event
    async def load(self):
        self.loading = True
        self.load_error = self.error = self.notice = ""
        self.query = ""
        user = await self.verified_user()
        if user is None:
            return
        try:
            await self._reload(user.user_id)
        except Exception:  # noqa: BLE001 - the page shows the failure instead of breaking
            self.load_error = "Your memories could not be loaded. Try again in a moment."
        self.loading = False

    @rx.event
    async def add(self, form_data: dict):
        user = await self.verified_user()
        if user is None:
            return
        self.adding, self.add_error = True, ""
        yield
        try:
            action = await browse.add(
                owner_id=user.user_id,
                content=str(form_data.get("content", "")),
                kind=str(form_data.get("kind", "")),
            )
        except REFUSALS as refusal:
            self.add_error = str(refusal)
            self.adding = False
            return
        except Exception:  # noqa: BLE001 - the form keeps what was typed
            self.add_error = UNEXPECTED
            self.adding = False
            return
        self.adding = False
        self.add_form_key += 1
        self.notice = (
            "Remembered." if action == "created" else "That was already known; updated it."
        )
        await self._reload(user.user_id)

    @rx.event
    def start_edit(self, memory_id: str):
        self.editing_id = memory_id
        self.edit_error = ""

    @rx.event
    def cancel_edit(self):
        self.editing_id = ""
        self.edit_error = ""

    @rx.event
    async def save_edit(self, form_data: dict):
        user = await self.verified_user()
        if user is None or not self.editing_id:
            return
        try:
            found = await browse.edit(
                owner_id=user.user_id,
                memory_id=self.editing_id,
                content=str(form_data.get("content", "")),
            )
        except REFUSALS as refusal:
            self.edit_error = str(refusal)
            return
        except Exception:  # noqa: BLE001 - the inline form keeps what was typed
            self.edit_error = UNEXPECTED
            return
        self.editing_id = ""
        if not found:
            self.error = "That memory no longer exists."
        else:
            self.notice = "Memory updated."
        await self._reload(user.user_id)

    @rx.event
    async def toggle_pin(self, memory_id: str, pinned: bool):
        user = await self.verified_user()
        if user is None:
            return
        try:
            found = await browse.pin(owner_id=user.user_id, memory_id=memory_id, pinned=pinned)
        except Exception:  # noqa: BLE001
            self.error = UNEXPECTED
            return
        if not found:
            self.error = "That memory no longer exists."
        else:
            self.notice = "Pinned: always recalled." if pinned else "Unpinned."
        await self._reload(user.user_id)

    @rx.event
    def ask_delete(self, memory_id: str, content: str):
        self.pending_delete_id = memory_id
        self.pending_delete_text = content

    @rx.event
    def cancel_delete(self):
        self.pending_delete_id = ""
        self.pending_delete_text = ""

    @rx.event
    async def confirm_delete(self):
        memory_id = self.pending_delete_id
        self.cancel_delete()
        user = await self.verified_user()
        if user is None or not memory_id:
            return
        try:
            removed = await browse.delete(owner_id=user.user_id, memory_id=memory_id)
        except Exception:  # noqa: BLE001
            self.error = UNEXPECTED
            return
        if removed:
            self.notice = "Memory deleted."
        else:
            self.error = "That memory no longer exists."
        await self._reload(user.user_id)

    @rx.event
    def set_query(self, value: str):
        self.query = value

    @rx.event
    async def clear_search(self):
        user = await self.verified_user()
        if user is None:
            return
        self.query = ""
        await self._reload(user.user_id)

    @rx.event(background=True)
    async def run_search(self, form_data: dict):
        query = " ".join(str(form_data.get("query", "")).split())
        async with self:
            user = await self.verified_user()
            if user is None:
                return
            self.query = query
            self.searching = True
            self.error = ""
        try:
            if query:
                results = await browse.search(owner_id=user.user_id, query=query)
            else:
                results = await browse.memory_cards(owner_id=user.user_id)
            problem = ""
        except Exception:  # noqa: BLE001 - shown instead of breaking the page
            results, problem = None, "The search failed. Try again in a moment."
        async with self:
            if results is not None:
                self.memories = results
                self.searched = bool(query)
            self.searching = False
            self.error = problem
