"""Documents in the user's knowledge tree: create, read, rename, move, delete, chunk.

Every function takes the verified owner's id and filters by it: another user's
document looks exactly like one that does not exist (None, 0 or []). Functions run in
the caller's transaction; the caller commits. Subtree renames and moves are one
UPDATE on the `ltree` column, so a subtree never ends up half moved.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta.db import driver_connection
from carmenta.errors import CarmentaError
from carmenta.knowledge.links import refresh_links, resolve_dangling_links
from carmenta.knowledge.models import DocumentSource
from carmenta.knowledge.paths import (
    MAX_DEPTH,
    MAX_LABEL_LENGTH,
    InvalidPath,
    last_label,
    parent_of,
    slugify_label,
    validate_path,
)

# Documents are Markdown written or imported by one person; larger text belongs in files.
MAX_CONTENT_BYTES = 1_000_000
MAX_TITLE_LENGTH = 300
DEFAULT_PARENT = "knowledge"

CHUNK_TARGET_CHARS = 800
CHUNK_OVERLAP_CHARS = 120


class DocumentTooLarge(CarmentaError, ValueError):
    """Content over MAX_CONTENT_BYTES."""


class DocumentConflict(CarmentaError, ValueError):
    """A move that would put a document where another already is, or under itself."""


class ProfileDocumentFixed(CarmentaError, ValueError):
    """A profile document asked to leave its place; the assistant finds them by path."""


def is_profile_path(path: str) -> bool:
    return path == "profile" or path.startswith("profile.")


@dataclass(frozen=True, slots=True)
class DocumentView:
    id: uuid.UUID
    path: str
    title: str
    content: str
    source: str
    created_at: datetime
    updated_at: datetime
    depth: int


def _view(row: Any) -> DocumentView:
    return DocumentView(
        id=row.id,
        path=row.path,
        title=row.title,
        content=row.content,
        source=row.source,
        created_at=row.created_at,
        updated_at=row.updated_at,
        depth=row.path.count(".") + 1,
    )


def content_size_problem(size_bytes: int) -> str | None:
    """Why content of `size_bytes` (UTF-8) cannot be kept, or None when it can."""
    if size_bytes <= MAX_CONTENT_BYTES:
        return None
    return (
        f"The document is {size_bytes / 1_000_000:.1f} MB; the limit is "
        f"{MAX_CONTENT_BYTES / 1_000_000:g} MB ({MAX_CONTENT_BYTES:,} bytes). "
        "Split it into several documents or upload it as a file."
    )


def _check_content(content: str) -> None:
    problem = content_size_problem(len(content.encode("utf-8")))
    if problem:
        raise DocumentTooLarge(problem)


def _check_title(title: str) -> str:
    cleaned = " ".join(title.split())
    if not cleaned:
        raise InvalidPath("A document needs a title.")
    if len(cleaned) > MAX_TITLE_LENGTH:
        raise InvalidPath(f"A title can be at most {MAX_TITLE_LENGTH} characters.")
    return cleaned


def _with_suffix(label: str, number: int) -> str:
    if number == 1:
        return label
    suffix = f"_{number}"
    return label[: MAX_LABEL_LENGTH - len(suffix)].rstrip("_") + suffix


async def _taken(session: AsyncSession, owner_id: uuid.UUID, path: str) -> bool:
    """Whether a document is at `path` or below it (orphaned descendants count too)."""
    result = await session.execute(
        text(
            "select exists (select 1 from documents where owner_id = :owner"
            " and path <@ cast(:path as ltree))"
        ),
        {"owner": owner_id, "path": path},
    )
    return bool(result.scalar_one())


async def _free_path(
    session: AsyncSession, owner_id: uuid.UUID, parent: str | None, label: str
) -> str:
    """`parent.label`, or `parent.label_2`, `_3`... when that is taken."""
    number = 1
    while True:
        candidate_label = _with_suffix(label, number)
        candidate = f"{parent}.{candidate_label}" if parent else candidate_label
        if not await _taken(session, owner_id, candidate):
            return candidate
        number += 1


async def _fetch_one(
    session: AsyncSession, sql: str, params: dict[str, Any]
) -> DocumentView | None:
    row = (await session.execute(text(sql), params)).first()
    return _view(row) if row is not None else None


async def get_document(
    *, session: AsyncSession, owner_id: uuid.UUID, document_id: uuid.UUID
) -> DocumentView | None:
    return await _fetch_one(
        session,
        "select id, path::text as path, title, content, source, created_at, updated_at"
        " from documents where owner_id = :owner and id = :id",
        {"owner": owner_id, "id": document_id},
    )


async def get_documents(
    *, session: AsyncSession, owner_id: uuid.UUID, document_ids: list[uuid.UUID]
) -> list[DocumentView]:
    """The owner's documents among `document_ids`, in that order (missing ones left out)."""
    if not document_ids:
        return []
    rows = (
        await session.execute(
            text(
                "select id, path::text as path, title, content, source, created_at, updated_at"
                " from documents where owner_id = :owner and id = any(:ids)"
            ),
            {"owner": owner_id, "ids": list(document_ids)},
        )
    ).all()
    by_id = {row.id: _view(row) for row in rows}
    return [by_id[document_id] for document_id in document_ids if document_id in by_id]


async def get_by_path(
    *, session: AsyncSession, owner_id: uuid.UUID, path: str
) -> DocumentView | None:
    try:
        validate_path(path)
    except InvalidPath:
        return None
    return await _fetch_one(
        session,
        "select id, path::text as path, title, content, source, created_at, updated_at"
        " from documents where owner_id = :owner and path = cast(:path as ltree)",
        {"owner": owner_id, "path": path},
    )


# A subtree is one contiguous range of the (owner_id, path) index: `root` itself, then
# its descendants, all sorting before `root` with "0" appended to its last label (labels
# hold [a-z0-9_], and a longer label sorts after its prefix). The prefix test keeps the
# condition exact; it is written without `<@` so that the planner walks this one
# owner's range rather than the path index, which holds every user's look-alike paths.
# Sent through the driver (psycopg's own placeholders): the Knowledge page lists a
# subtree on every click, and its query takes about a millisecond.
LIST_TREE_SQL = (
    "select id, path::text as path, title, content, source, created_at, updated_at"
    " from documents where owner_id = %(owner)s"
    " and (cast(%(root)s as ltree) is null or (path >= cast(%(root)s as ltree)"
    " and path < cast(%(root_end)s as ltree)"
    " and subpath(path, 0, nlevel(cast(%(root)s as ltree))) = cast(%(root)s as ltree)))"
    # The ltree column, not the text alias: tree order, straight from the index.
    " order by documents.path"
)


def _subtree_end(root: str) -> str:
    return root + "0"


async def list_tree(
    *, session: AsyncSession, owner_id: uuid.UUID, root: str | None = None
) -> list[DocumentView]:
    """The owner's documents ordered by path; only `root` and below when given."""
    return await list_tree_on(
        connection=await driver_connection(session), owner_id=owner_id, root=root
    )


async def list_tree_on(
    *, connection: AsyncConnection[Any], owner_id: uuid.UUID, root: str | None = None
) -> list[DocumentView]:
    """`list_tree` on a driver connection: the Knowledge page's, from `db.statement_connection`."""
    if root is not None:
        validate_path(root)
    # A NULL root means the whole tree; the planner drops the always-true branch.
    cursor = await connection.execute(
        LIST_TREE_SQL,
        {
            "owner": owner_id,
            "root": root,
            "root_end": _subtree_end(root) if root is not None else None,
        },
    )
    # A subtree can hold thousands of documents: rows are unpacked by position, not
    # looked up by name, and the view is built once per row.
    return [
        DocumentView(id_, path, title, content, source, created, updated, path.count(".") + 1)
        for id_, path, title, content, source, created, updated in await cursor.fetchall()
    ]


async def create_document(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    parent_path: str | None,
    title: str,
    content: str = "",
    source: str = DocumentSource.manual.value,
    source_file_id: uuid.UUID | None = None,
) -> DocumentView:
    """A new document at `parent_path` + the title's slug (`knowledge` when no parent)."""
    title = _check_title(title)
    _check_content(content)
    if source not in {member.value for member in DocumentSource}:
        raise ValueError(f"Unknown document source {source!r}.")
    parent = validate_path(parent_path) if parent_path else DEFAULT_PARENT
    if parent.count(".") + 2 > MAX_DEPTH:
        raise InvalidPath(f"Documents can be nested at most {MAX_DEPTH} levels deep.")
    path = await _free_path(session, owner_id, parent, slugify_label(title))
    view = await _fetch_one(
        session,
        """
        insert into documents (owner_id, path, title, content, source, source_file_id)
        values (:owner, cast(:path as ltree), :title, :content, :source, :file)
        returning id, path::text as path, title, content, source, created_at, updated_at
        """,
        {
            "owner": owner_id,
            "path": path,
            "title": title,
            "content": content,
            "source": source,
            "file": source_file_id,
        },
    )
    assert view is not None
    await refresh_links(session=session, owner_id=owner_id, document_id=view.id, content=content)
    await resolve_dangling_links(session=session, owner_id=owner_id, subtree=view.path)
    await rechunk_document(session=session, owner_id=owner_id, document_id=view.id)
    return view


async def update_document(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    document_id: uuid.UUID,
    title: str | None = None,
    content: str | None = None,
) -> DocumentView | None:
    """Change the display title and/or content; the path stays (see rename_document)."""
    current = await get_document(session=session, owner_id=owner_id, document_id=document_id)
    if current is None:
        return None
    new_title = _check_title(title) if title is not None else current.title
    new_content = content if content is not None else current.content
    _check_content(new_content)
    view = await _fetch_one(
        session,
        """
        update documents set title = :title, content = :content, updated_at = now()
         where owner_id = :owner and id = :id
        returning id, path::text as path, title, content, source, created_at, updated_at
        """,
        {"owner": owner_id, "id": document_id, "title": new_title, "content": new_content},
    )
    assert view is not None
    if new_content != current.content:
        await refresh_links(
            session=session, owner_id=owner_id, document_id=document_id, content=new_content
        )
        await rechunk_document(session=session, owner_id=owner_id, document_id=document_id)
    if new_title != current.title:
        await resolve_dangling_links(session=session, owner_id=owner_id, subtree=view.path)
    return view


async def _repath_subtree(
    session: AsyncSession, owner_id: uuid.UUID, old_prefix: str, new_prefix: str
) -> None:
    # One statement: the document and every descendant get the new prefix together.
    # subpath(path, n) is refused when n equals the depth, hence the root's own case.
    await session.execute(
        text(
            """
            update documents
               set path = case when path = cast(:old as ltree) then cast(:new as ltree)
                               else cast(:new as ltree)
                                    || subpath(path, nlevel(cast(:old as ltree)))
                          end,
                   updated_at = now()
             where owner_id = :owner and path <@ cast(:old as ltree)
            """
        ),
        {"owner": owner_id, "old": old_prefix, "new": new_prefix},
    )


async def rename_document(
    *, session: AsyncSession, owner_id: uuid.UUID, document_id: uuid.UUID, new_title: str
) -> DocumentView | None:
    """New title and last path label, for the document and its whole subtree."""
    current = await get_document(session=session, owner_id=owner_id, document_id=document_id)
    if current is None:
        return None
    new_title = _check_title(new_title)
    label = slugify_label(new_title)
    parent = parent_of(current.path)
    if current.path.startswith("profile.") or current.path == "profile":
        # The profile documents are found by their fixed paths; only the title changes.
        new_path = current.path
    elif label == last_label(current.path):
        new_path = current.path
    else:
        new_path = await _free_path(session, owner_id, parent, label)
    if new_path != current.path:
        await _repath_subtree(session, owner_id, current.path, new_path)
    view = await _fetch_one(
        session,
        """
        update documents set title = :title, updated_at = now()
         where owner_id = :owner and id = :id
        returning id, path::text as path, title, content, source, created_at, updated_at
        """,
        {"owner": owner_id, "id": document_id, "title": new_title},
    )
    assert view is not None
    await resolve_dangling_links(session=session, owner_id=owner_id, subtree=view.path)
    return view


async def move_subtree(
    *, session: AsyncSession, owner_id: uuid.UUID, document_id: uuid.UUID, new_parent_path: str
) -> DocumentView | None:
    """Move the document and everything under it below `new_parent_path`."""
    validate_path(new_parent_path)
    current = await get_document(session=session, owner_id=owner_id, document_id=document_id)
    if current is None:
        return None
    old = current.path
    if is_profile_path(old):
        # Like a rename, a move would change the path the assistant looks them up by.
        raise ProfileDocumentFixed(
            f"{current.title!r} is a profile document and stays where it is; "
            "edit or rename it instead."
        )
    if new_parent_path == old or new_parent_path.startswith(old + "."):
        raise DocumentConflict(f"Cannot move {old} under itself ({new_parent_path}).")
    new_path = f"{new_parent_path}.{last_label(old)}"
    if new_path == old:
        return current
    if await _taken(session, owner_id, new_path):
        raise DocumentConflict(
            f"Cannot move {old} to {new_path}: a document is already there. "
            "Rename one of them first."
        )
    deepest = (
        await session.execute(
            text(
                "select max(nlevel(path)) from documents where owner_id = :owner"
                " and path <@ cast(:old as ltree)"
            ),
            {"owner": owner_id, "old": old},
        )
    ).scalar_one()
    if deepest - old.count(".") + new_path.count(".") > MAX_DEPTH:
        raise InvalidPath(
            f"Moving {old} under {new_parent_path} would nest documents more than "
            f"{MAX_DEPTH} levels deep."
        )
    await _repath_subtree(session, owner_id, old, new_path)
    await resolve_dangling_links(session=session, owner_id=owner_id, subtree=new_path)
    return await get_document(session=session, owner_id=owner_id, document_id=document_id)


async def subtree_size(
    *, session: AsyncSession, owner_id: uuid.UUID, document_id: uuid.UUID
) -> int:
    """How many documents delete_subtree would remove: shown when asking to confirm."""
    result = await session.execute(
        text(
            """
            select count(*) from documents d
             where d.owner_id = :owner and d.path <@ (
                   select path from documents where owner_id = :owner and id = :id)
            """
        ),
        {"owner": owner_id, "id": document_id},
    )
    return int(result.scalar_one())


async def delete_subtree(
    *, session: AsyncSession, owner_id: uuid.UUID, document_id: uuid.UUID
) -> int:
    """Delete the document and its descendants; returns how many went (0: no such one).

    The profile documents every user starts with can be emptied but not deleted.
    """
    current = await get_document(session=session, owner_id=owner_id, document_id=document_id)
    if current is None:
        return 0
    if current.path in PROFILE_PATHS:
        raise ProfileDocumentFixed(
            f"{current.title!r} is one of your profile documents and cannot be deleted; "
            "edit it instead."
        )
    result = await session.execute(
        text(
            """
            delete from documents d
             where d.owner_id = :owner and d.path <@ (
                   select path from documents where owner_id = :owner and id = :id)
            """
        ),
        {"owner": owner_id, "id": document_id},
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


_PROFILE_SEEDS = (
    (
        "profile.identity",
        "Identity",
        "# About {name}\n\nName: {name}\n\n"
        "Add what helps the assistant know you: where you live, what you do, "
        "the people and projects that matter to you.\n",
    ),
    (
        "profile.preferences",
        "Preferences",
        "# Preferences\n\n"
        "- Time zone and units:\n- Languages:\n- Things to remember when helping me:\n",
    ),
    (
        "profile.voice",
        "How the assistant speaks",
        "# How to speak to {name}\n\n"
        "- Be clear and direct; keep answers short unless asked for detail.\n"
        "- Say so when unsure instead of guessing.\n",
    ),
)


PROFILE_PATHS = frozenset(path for path, _, _ in _PROFILE_SEEDS)


async def seed_profile(
    *, session: AsyncSession, owner_id: uuid.UUID, display_name: str
) -> list[DocumentView]:
    """The profile documents every user starts with; ones already there are left alone."""
    name = " ".join(display_name.split()) or "me"
    for path, title, template in _PROFILE_SEEDS:
        await session.execute(
            text(
                """
                insert into documents (owner_id, path, title, content, source)
                values (:owner, cast(:path as ltree), :title, :content, 'manual')
                on conflict (owner_id, path) do nothing
                """
            ),
            {
                "owner": owner_id,
                "path": path,
                "title": title,
                "content": template.format(name=name),
            },
        )
    return await list_tree(session=session, owner_id=owner_id, root="profile")


# Paragraphs first, then sentences, then words: the largest unit that fits is kept whole.
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _pieces(content: str, target: int) -> list[str]:
    pieces: list[str] = []
    for paragraph in _PARAGRAPH_BREAK.split(content):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if len(paragraph) <= target:
            pieces.append(paragraph)
            continue
        for sentence in _SENTENCE_END.split(paragraph):
            while len(sentence) > target:
                cut = sentence.rfind(" ", 0, target)
                cut = cut if cut > target // 2 else target
                pieces.append(sentence[:cut].strip())
                sentence = sentence[cut:].strip()
            if sentence:
                pieces.append(sentence)
    return pieces


def _tail(chunk: str, overlap: int) -> str:
    """The last `overlap` characters or so, starting at a word."""
    if len(chunk) <= overlap:
        return chunk
    tail = chunk[-overlap:]
    space = tail.find(" ")
    return tail[space + 1 :] if 0 <= space < len(tail) - 1 else tail


def split_into_chunks(
    content: str, *, target: int = CHUNK_TARGET_CHARS, overlap: int = CHUNK_OVERLAP_CHARS
) -> list[str]:
    """Passages of about `target` characters on paragraph or sentence boundaries, each
    starting with the end of the one before so that no idea is cut off at a seam."""
    chunks: list[str] = []
    current = ""
    for piece in _pieces(content, target):
        separator = "\n\n" if "\n" in content else " "
        if current and len(current) + len(separator) + len(piece) > target:
            chunks.append(current)
            carried = _tail(current, overlap)
            current = carried + separator + piece if carried else piece
        else:
            current = current + separator + piece if current else piece
    if current:
        chunks.append(current)
    return chunks


async def rechunk_document(
    *, session: AsyncSession, owner_id: uuid.UUID, document_id: uuid.UUID
) -> int:
    """Split the document's content into chunks again, all waiting for embedding."""
    document = await get_document(session=session, owner_id=owner_id, document_id=document_id)
    await session.execute(
        text("delete from document_chunks where owner_id = :owner and document_id = :id"),
        {"owner": owner_id, "id": document_id},
    )
    if document is None:
        return 0
    chunks = split_into_chunks(document.content)
    if chunks:
        # No embedding and no embedded_at: the embedding job picks these up.
        await session.execute(
            text(
                """
                insert into document_chunks (owner_id, document_id, ordinal, content)
                select :owner, :id, c.ordinal - 1, c.content
                  from unnest(cast(:chunks as text[])) with ordinality as c(content, ordinal)
                """
            ),
            {"owner": owner_id, "id": document_id, "chunks": chunks},
        )
    return len(chunks)
