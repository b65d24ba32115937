"""The Knowledge page: the document tree, the open document, its editor and search.

The editor's text lives in the browser until it is saved: typing only reports the
text's size, so a huge paste is refused here without ever crossing the websocket,
and the text stays in the editor whatever the server answers.
"""

from __future__ import annotations

import reflex as rx

from carmenta.errors import CarmentaError
from carmenta.knowledge import browse
from carmenta.knowledge.browse import LinkItem, SearchResult
from carmenta.knowledge.display import render_wiki_links, resolve_link
from carmenta.knowledge.service import MAX_CONTENT_BYTES, content_size_problem
from carmenta.knowledge.tree import (
    TreeDocument,
    TreeRow,
    ancestors,
    breadcrumb,
    build_tree_rows,
    parent_choices,
    parse_document_id,
)
from carmenta.state.session import SessionState

EDITOR_ID = "document-editor"
UNEXPECTED = "Something went wrong on our side; nothing was changed. Try again in a moment."


class KnowledgeState(SessionState):
    loading: bool = True
    load_error: str = ""
    error: str = ""
    notice: str = ""
    documents: list[TreeDocument] = []
    expanded: list[str] = []

    # The open document.
    doc_id: str = ""
    doc_title: str = ""
    doc_path: str = ""
    doc_updated: str = ""
    doc_is_profile: bool = False
    doc_is_fixed: bool = False
    saved_content: str = ""
    backlinks: list[LinkItem] = []
    # Changes whenever the editor must start again from saved_content.
    editor_key: int = 0
    dirty: bool = False
    draft_bytes: int = 0
    size_error: str = ""
    saving: bool = False
    preview: bool = False
    preview_source: str = ""

    # Search.
    search_query: str = ""
    searching: bool = False
    searched: bool = False
    search_results: list[SearchResult] = []

    # Dialogs: "" when closed.
    create_kind: str = ""
    create_parent: str = "knowledge"
    dialog_error: str = ""
    rename_open: bool = False
    move_open: bool = False
    delete_open: bool = False
    delete_count: int = 0
    # A notice that must survive the redirect an action ends with.
    _next_notice: str = ""

    # --- derived -----------------------------------------------------------------

    @rx.var
    def profile_rows(self) -> list[TreeRow]:
        return build_tree_rows(self.documents, expanded=self.expanded)["profile"]

    @rx.var
    def knowledge_rows(self) -> list[TreeRow]:
        return build_tree_rows(self.documents, expanded=self.expanded)["knowledge"]

    @rx.var
    def doc_breadcrumb(self) -> str:
        return breadcrumb(self.doc_path, self.documents) if self.doc_path else ""

    @rx.var
    def preview_markdown(self) -> str:
        documents = self.documents
        return render_wiki_links(
            self.preview_source, lambda target: resolve_link(target, documents)
        )

    @rx.var
    def create_parents(self) -> list[list[str]]:
        return [[path, label] for path, label in parent_choices(self.documents)]

    @rx.var
    def move_parents(self) -> list[list[str]]:
        # The profile keeps its documents; everything else can go anywhere but below itself.
        return [
            [path, label]
            for path, label in parent_choices(self.documents, excluding=self.doc_path or None)
            if path.split(".")[0] == "knowledge"
        ]

    # --- loading -----------------------------------------------------------------

    async def _reload_tree(self, user_id) -> None:
        self.documents = await browse.tree(owner_id=user_id)

    async def _open(self, user_id, document_id: str) -> bool:
        document = await browse.open_document(owner_id=user_id, document_id=document_id)
        if document is None:
            self._close_document()
            return False
        self.doc_id = document.id
        self.doc_title = document.title
        self.doc_path = document.path
        self.doc_updated = document.updated
        self.doc_is_profile = document.is_profile
        self.doc_is_fixed = document.is_fixed
        self.saved_content = document.content
        self.preview_source = document.content
        self.backlinks = document.backlinks
        self.editor_key += 1
        self.dirty = False
        self.size_error = ""
        self.draft_bytes = len(document.content.encode("utf-8"))
        self.expanded = sorted(set(self.expanded) | set(ancestors(document.path)))
        return True

    def _close_document(self) -> None:
        self.doc_id = self.doc_title = self.doc_path = self.doc_updated = ""
        self.saved_content = self.preview_source = ""
        self.backlinks = []
        self.dirty = False
        self.size_error = ""
        self.editor_key += 1

    @rx.event
    async def load(self):
        self.loading = True
        self.load_error = self.error = ""
        self.notice, self._next_notice = self._next_notice, ""
        user = await self.verified_user()
        if user is None:
            return
        query = self.router.url.query_parameters if self.router.url else {}
        wanted = str(query.get("doc", "") or "")
        try:
            await self._reload_tree(user.user_id)
            if wanted:
                if not await self._open(user.user_id, wanted):
                    self.error = "That document does not exist, or it was deleted."
            elif self.doc_id and parse_document_id(self.doc_id):
                await self._open(user.user_id, self.doc_id)
        except Exception:  # noqa: BLE001 - the page shows the failure instead of breaking
            self.load_error = "Your documents could not be loaded. Try again in a moment."
        self.loading = False

    @rx.event
    def toggle_folder(self, path: str):
        expanded = set(self.expanded)
        expanded.symmetric_difference_update({path})
        self.expanded = sorted(expanded)

    @rx.event
    def open_document(self, document_id: str):
        # Through the URL, so the address can be shared and Back works.
        return rx.redirect(f"/knowledge?doc={document_id}")

    # --- editing -----------------------------------------------------------------

    @rx.event
    def note_edit(self, size_bytes: int):
        """The editor changed; only its size in UTF-8 bytes is sent."""
        self.dirty = True
        self.draft_bytes = int(size_bytes or 0)
        self.size_error = content_size_problem(self.draft_bytes) or ""

    @rx.event
    async def save(self, content: str | None):
        """`content` is None when the browser found the text over the limit."""
        if not self.doc_id:
            return
        if content is None:
            self.size_error = (
                content_size_problem(max(self.draft_bytes, MAX_CONTENT_BYTES + 1)) or ""
            )
            return
        user = await self.verified_user()
        if user is None:
            return
        self.saving = True
        self.error = ""
        yield
        try:
            saved = await browse.save(
                owner_id=user.user_id, document_id=self.doc_id, content=content
            )
        except CarmentaError as refusal:
            self.error = str(refusal)
            saved = None
        except Exception:  # noqa: BLE001 - the typed text stays in the editor
            self.error = UNEXPECTED
            saved = None
        self.saving = False
        if saved is None:
            if not self.error:
                self.error = "That document no longer exists; copy your text before leaving."
            return
        self.saved_content = saved.content
        self.preview_source = saved.content
        self.doc_updated = saved.updated_at.strftime("%d %b %Y, %H:%M")
        self.dirty = False
        self.size_error = ""
        self.notice = "Saved."
        await self._reload_tree(user.user_id)

    @rx.event
    def show_preview(self, content: str | None):
        if content is None:
            self.size_error = content_size_problem(self.draft_bytes) or ""
            return
        self.preview_source = content
        self.preview = True

    @rx.event
    def show_editor(self):
        self.preview = False

    # --- search ------------------------------------------------------------------

    @rx.event
    def set_search_query(self, value: str):
        self.search_query = value

    @rx.event
    def clear_search(self):
        self.search_query = ""
        self.search_results = []
        self.searched = False

    @rx.event(background=True)
    async def run_search(self, form_data: dict):
        query = str(form_data.get("query", "")).strip()
        async with self:
            user = await self.verified_user()
            if user is None:
                return
            self.search_query = query
            self.searching = True
            self.error = ""
        try:
            results = await browse.search(owner_id=user.user_id, query=query)
            problem = ""
        except Exception:  # noqa: BLE001 - shown instead of breaking the page
            results, problem = [], "The search failed. Try again in a moment."
        async with self:
            self.search_results = results
            self.searched = bool(query)
            self.searching = False
            self.error = problem

    # --- create, rename, move, delete ---------------------------------------------

    @rx.event
    def open_create(self, kind: str):
        self.create_kind = kind if kind in ("document", "folder") else "document"
        self.dialog_error = ""
        # New things go inside the open folder, or next to the open document.
        below = self.doc_path + "."
        row_is_folder = any(
            document.path.startswith(below) or (document.path == self.doc_path and document.empty)
            for document in self.documents
        )
        if self.doc_path and row_is_folder:
            self.create_parent = self.doc_path
        elif self.doc_path and "." in self.doc_path:
            self.create_parent = self.doc_path.rpartition(".")[0]
        else:
            self.create_parent = "knowledge"

    @rx.event
    def close_dialogs(self):
        self.create_kind = ""
        self.rename_open = self.move_open = self.delete_open = False
        self.dialog_error = ""

    @rx.event
    async def create(self, form_data: dict):
        user = await self.verified_user()
        if user is None:
            return
        title = str(form_data.get("title", ""))
        parent = str(form_data.get("parent", "")) or "knowledge"
        kind = self.create_kind
        content = "" if kind == "folder" else f"# {' '.join(title.split())}\n\n"
        try:
            created = await browse.create(
                owner_id=user.user_id, parent_path=parent, title=title, content=content
            )
        except CarmentaError as refusal:
            self.dialog_error = str(refusal)
            return
        except Exception:  # noqa: BLE001 - the dialog keeps what was typed
            self.dialog_error = UNEXPECTED
            return
        self.create_kind = ""
        self._next_notice = (
            f"{'Folder' if kind == 'folder' else 'Document'} “{created.title}” created."
        )
        self.expanded = sorted(set(self.expanded) | set(ancestors(created.path)) | {parent})
        return rx.redirect(f"/knowledge?doc={created.id}")

    @rx.event
    def open_rename(self):
        self.rename_open = bool(self.doc_id)
        self.dialog_error = ""

    @rx.event
    async def rename(self, form_data: dict):
        user = await self.verified_user()
        if user is None or not self.doc_id:
            return
        try:
            renamed = await browse.rename(
                owner_id=user.user_id,
                document_id=self.doc_id,
                title=str(form_data.get("title", "")),
            )
        except CarmentaError as refusal:
            self.dialog_error = str(refusal)
            return
        except Exception:  # noqa: BLE001
            self.dialog_error = UNEXPECTED
            return
        self.rename_open = False
        if renamed is None:
            self.error = "That document no longer exists."
            return
        self.doc_title, self.doc_path = renamed.title, renamed.path
        self.notice = f"Renamed to “{renamed.title}”."
        await self._reload_tree(user.user_id)

    @rx.event
    def open_move(self):
        self.move_open = bool(self.doc_id) and not self.doc_is_profile
        self.dialog_error = ""

    @rx.event
    async def move(self, form_data: dict):
        user = await self.verified_user()
        if user is None or not self.doc_id:
            return
        new_parent = str(form_data.get("parent", ""))
        try:
            moved = await browse.move(
                owner_id=user.user_id, document_id=self.doc_id, new_parent_path=new_parent
            )
        except CarmentaError as refusal:
            self.dialog_error = str(refusal)
            return
        except Exception:  # noqa: BLE001
            self.dialog_error = UNEXPECTED
            return
        self.move_open = False
        if moved is None:
            self.error = "That document no longer exists."
            return
        self.doc_path = moved.path
        await self._reload_tree(user.user_id)
        self.expanded = sorted(set(self.expanded) | set(ancestors(moved.path)))
        self.notice = f"Moved to {breadcrumb(moved.path, self.documents)}."

    @rx.event
    async def open_delete(self):
        user = await self.verified_user()
        if user is None or not self.doc_id:
            return
        try:
            self.delete_count = await browse.count_subtree(
                owner_id=user.user_id, document_id=self.doc_id
            )
        except Exception:  # noqa: BLE001
            self.error = UNEXPECTED
            return
        self.dialog_error = ""
        self.delete_open = True

    @rx.event
    async def delete(self):
        user = await self.verified_user()
        if user is None or not self.doc_id:
            return
        title = self.doc_title
        try:
            removed = await browse.delete(owner_id=user.user_id, document_id=self.doc_id)
        except CarmentaError as refusal:
            self.dialog_error = str(refusal)
            return
        except Exception:  # noqa: BLE001
            self.dialog_error = UNEXPECTED
            return
        self.delete_open = False
        self._close_document()
        self._next_notice = f"“{title}” deleted" + (
            f" with {removed - 1} more." if removed > 1 else "."
        )
        await self._reload_tree(user.user_id)
        return rx.redirect("/knowledge")
