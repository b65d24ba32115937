"""What the Knowledge page shows and does, each in a transaction of its own.

Every function takes the verified owner's id; ids arriving from the browser are
parsed here, and one that is not an id looks like a document that does not exist.
Refusals from the service (CarmentaError) reach the caller with their message.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from carmenta import db
from carmenta.knowledge import links
from carmenta.knowledge import search as search_service
from carmenta.knowledge import service as documents
from carmenta.knowledge.display import SnippetSegment, snippet_segments
from carmenta.knowledge.service import DocumentView
from carmenta.knowledge.tree import TreeDocument, parse_document_id

SEARCH_LIMIT = 20


@dataclass
class LinkItem:
    id: str = ""
    title: str = ""
    path: str = ""


@dataclass
class OpenDocument:
    id: str = ""
    path: str = ""
    title: str = ""
    content: str = ""
    source: str = ""
    updated: str = ""
    is_profile: bool = False
    # One of the profile documents every user starts with: it cannot be deleted.
    is_fixed: bool = False
    # Documents linking here ("Linked from").
    backlinks: list[LinkItem] = field(default_factory=list)


@dataclass
class SearchResult:
    id: str = ""
    title: str = ""
    path: str = ""
    segments: list[SnippetSegment] = field(default_factory=list)
    by_title: bool = False


def _tree_document(view: DocumentView) -> TreeDocument:
    return TreeDocument(
        id=str(view.id), path=view.path, title=view.title, empty=not view.content.strip()
    )


async def tree(*, owner_id: uuid.UUID) -> list[TreeDocument]:
    # One read on the page's hottest path: no transaction and no session around it.
    async with db.statement_connection() as connection:
        views = await documents.list_tree_on(connection=connection, owner_id=owner_id)
    return [_tree_document(view) for view in views]


async def open_document(*, owner_id: uuid.UUID, document_id: str) -> OpenDocument | None:
    parsed = parse_document_id(document_id)
    if parsed is None:
        return None
    async with db.session_scope() as session:
        view = await documents.get_document(session=session, owner_id=owner_id, document_id=parsed)
        if view is None:
            return None
        incoming = await links.backlinks(session=session, owner_id=owner_id, document_id=parsed)
    return OpenDocument(
        id=str(view.id),
        path=view.path,
        title=view.title,
        content=view.content,
        source=view.source,
        updated=view.updated_at.strftime("%d %b %Y, %H:%M"),
        is_profile=documents.is_profile_path(view.path),
        is_fixed=view.path in documents.PROFILE_PATHS,
        backlinks=[
            LinkItem(id=str(link.document_id), title=link.title or "", path=link.path or "")
            for link in incoming
        ],
    )


async def create(
    *, owner_id: uuid.UUID, parent_path: str, title: str, content: str = ""
) -> DocumentView:
    async with db.session_scope() as session:
        return await documents.create_document(
            session=session,
            owner_id=owner_id,
            parent_path=parent_path or None,
            title=title,
            content=content,
        )


async def save(*, owner_id: uuid.UUID, document_id: str, content: str) -> DocumentView | None:
    parsed = parse_document_id(document_id)
    if parsed is None:
        return None
    async with db.session_scope() as session:
        return await documents.update_document(
            session=session, owner_id=owner_id, document_id=parsed, content=content
        )


async def rename(*, owner_id: uuid.UUID, document_id: str, title: str) -> DocumentView | None:
    parsed = parse_document_id(document_id)
    if parsed is None:
        return None
    async with db.session_scope() as session:
        return await documents.rename_document(
            session=session, owner_id=owner_id, document_id=parsed, new_title=title
        )


async def move(
    *, owner_id: uuid.UUID, document_id: str, new_parent_path: str
) -> DocumentView | None:
    parsed = parse_document_id(document_id)
    if parsed is None:
        return None
    async with db.session_scope() as session:
        return await documents.move_subtree(
            session=session, owner_id=owner_id, document_id=parsed, new_parent_path=new_parent_path
        )


async def count_subtree(*, owner_id: uuid.UUID, document_id: str) -> int:
    parsed = parse_document_id(document_id)
    if parsed is None:
        return 0
    async with db.session_scope() as session:
        return await documents.subtree_size(session=session, owner_id=owner_id, document_id=parsed)


async def delete(*, owner_id: uuid.UUID, document_id: str) -> int:
    parsed = parse_document_id(document_id)
    if parsed is None:
        return 0
    async with db.session_scope() as session:
        return await documents.delete_subtree(
            session=session, owner_id=owner_id, document_id=parsed
        )


async def search(*, owner_id: uuid.UUID, query: str) -> list[SearchResult]:
    # One statement: no transaction around it.
    async with db.statement_scope() as session:
        hits = await search_service.search_documents(
            session=session, owner_id=owner_id, query=query, limit=SEARCH_LIMIT
        )
    return [
        SearchResult(
            id=str(hit.id),
            title=hit.title,
            path=hit.path,
            segments=snippet_segments(hit.snippet),
            by_title=hit.matched_by == "title_similarity",
        )
        for hit in hits
    ]
