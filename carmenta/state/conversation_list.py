"""The sidebar's conversations: listing, search, rename, star, archive and delete."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import reflex as rx

from carmenta.conversations import service as conversations
from carmenta.db import session_scope
from carmenta.errors import CarmentaError
from carmenta.state.session import SessionState


@dataclass
class ConversationItem:
    id: str
    title: str
    starred: bool
    archived: bool
    snippet_before: str = ""
    snippet_match: str = ""
    snippet_after: str = ""


def _item(view: conversations.ConversationView) -> ConversationItem:
    before, match, after = "", "", ""
    if view.snippet and "«" in view.snippet and "»" in view.snippet:
        before, _, rest = view.snippet.partition("«")
        match, _, after = rest.partition("»")
        after = after.replace("«", "").replace("»", "")
    elif view.snippet:
        before = view.snippet
    return ConversationItem(
        id=str(view.id),
        title=view.title,
        starred=view.starred,
        archived=view.archived,
        snippet_before=before,
        snippet_match=match,
        snippet_after=after,
    )


class ConversationListState(SessionState):
    items: list[ConversationItem] = []
    query: str = ""
    show_archived: bool = False
    list_error: str = ""
    loaded: bool = False
    rename_id: str = ""
    rename_text: str = ""
    delete_id: str = ""
    delete_title: str = ""

    @rx.var
    def starred_items(self) -> list[ConversationItem]:
        return [item for item in self.items if item.starred and not self.query]

    @rx.var
    def other_items(self) -> list[ConversationItem]:
        return [item for item in self.items if self.query or not item.starred]

    async def _owner(self) -> uuid.UUID | None:
        user = await self.verified_user()
        return user.user_id if user is not None else None

    @rx.event
    async def reload(self):
        owner = await self._owner()
        if owner is None:
            self.items = []
            return
        try:
            async with session_scope() as session:
                if self.query.strip():
                    views = await conversations.search_conversations(
                        session=session, owner_id=owner, query=self.query
                    )
                else:
                    views = await conversations.list_conversations(
                        session=session, owner_id=owner, archived=self.show_archived
                    )
            self.items = [_item(view) for view in views]
            self.list_error = ""
        except Exception:  # noqa: BLE001 - the sidebar says so instead of breaking the page
            self.list_error = "Conversations could not be loaded."
        self.loaded = True

    @rx.event
    async def search(self, value: str):
        self.query = value
        await self.reload()

    @rx.event
    async def toggle_archived(self):
        self.show_archived = not self.show_archived
        await self.reload()

    async def _change(self, conversation_id: str, action) -> None:
        owner = await self._owner()
        if owner is None:
            return
        try:
            async with session_scope() as session:
                await action(session, owner, uuid.UUID(conversation_id))
                await session.commit()
        except (CarmentaError, ValueError) as error:
            self.list_error = str(error)
            return
        await self.reload()

    @rx.event
    async def toggle_star(self, conversation_id: str, starred: bool):
        async def action(session, owner, cid):
            await conversations.set_starred(
                session=session, owner_id=owner, conversation_id=cid, starred=not starred
            )

        await self._change(conversation_id, action)

    @rx.event
    async def toggle_archive(self, conversation_id: str, archived: bool):
        async def action(session, owner, cid):
            await conversations.set_archived(
                session=session, owner_id=owner, conversation_id=cid, archived=not archived
            )

        await self._change(conversation_id, action)

    @rx.event
    def ask_rename(self, conversation_id: str, title: str):
        self.rename_id = conversation_id
        self.rename_text = title

    @rx.event
    def set_rename_text(self, value: str):
        self.rename_text = value

    @rx.event
    def close_dialogs(self):
        self.rename_id = ""
        self.delete_id = ""

    @rx.event
    async def rename(self):
        conversation_id, title = self.rename_id, self.rename_text

        async def action(session, owner, cid):
            await conversations.rename_conversation(
                session=session, owner_id=owner, conversation_id=cid, title=title
            )

        self.list_error = ""
        await self._change(conversation_id, action)
        if not self.list_error:
            self.rename_id = ""
            from carmenta.state.chat import ChatState

            chat = await self.get_state(ChatState)
            if chat.conversation_id == conversation_id:
                chat.title = " ".join(title.split())

    @rx.event
    def ask_delete(self, conversation_id: str, title: str):
        self.delete_id = conversation_id
        self.delete_title = title

    @rx.event
    async def delete(self):
        conversation_id = self.delete_id

        async def action(session, owner, cid):
            await conversations.delete_conversation(
                session=session, owner_id=owner, conversation_id=cid
            )

        await self._change(conversation_id, action)
        self.delete_id = ""
        from carmenta.state.chat import ChatState

        chat = await self.get_state(ChatState)
        if chat.conversation_id == conversation_id:
            return rx.redirect("/")
        return None
