"""`[[wiki links]]` between documents, kept in `document_links`.

Links reference documents by id, so moving or renaming a document keeps every link
to it. A link to a document not written yet is kept with no target and picked up when
a document with that title (or path) appears.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

# `[[Title]]` or `[[Title|shown label]]`; brackets, pipes and newlines end a target.
_WIKI_LINK = re.compile(r"\[\[([^\[\]|\n]+)(?:\|[^\[\]\n]*)?\]\]")
MAX_LINK_TEXT = 300


@dataclass(frozen=True)
class LinkView:
    """One end of a link: the other document, and the text the link was written with."""

    document_id: uuid.UUID | None
    path: str | None
    title: str | None
    link_text: str


def parse_wiki_links(markdown: str) -> list[str]:
    """Link targets in order of first appearance, each once (case-insensitively)."""
    seen: set[str] = set()
    targets: list[str] = []
    for match in _WIKI_LINK.finditer(markdown):
        target = " ".join(match.group(1).split())[:MAX_LINK_TEXT]
        if target and target.casefold() not in seen:
            seen.add(target.casefold())
            targets.append(target)
    return targets


async def refresh_links(
    *, session: AsyncSession, owner_id: uuid.UUID, document_id: uuid.UUID, content: str
) -> int:
    """Replace the document's outgoing links with those in `content`; returns how many."""
    await session.execute(
        text("delete from document_links where owner_id = :owner and source_document_id = :doc"),
        {"owner": owner_id, "doc": document_id},
    )
    targets = parse_wiki_links(content)
    if not targets:
        return 0
    # An exact path wins over a title; among equal titles the shallowest, then first path.
    await session.execute(
        text(
            """
            insert into document_links (owner_id, source_document_id, target_document_id,
                                        link_text)
            select :owner, :doc,
                   (select d.id from documents d
                     where d.owner_id = :owner
                       and (lower(d.title) = lower(t.link_text) or d.path::text = t.link_text)
                     order by d.path::text = t.link_text desc, nlevel(d.path), d.path
                     limit 1),
                   t.link_text
              from unnest(cast(:targets as text[])) as t(link_text)
            """
        ),
        {"owner": owner_id, "doc": document_id, "targets": targets},
    )
    return len(targets)


async def resolve_dangling_links(
    *, session: AsyncSession, owner_id: uuid.UUID, subtree: str
) -> int:
    """Point unresolved links at documents in `subtree` whose title or path they name."""
    result = await session.execute(
        text(
            """
            update document_links l
               set target_document_id = d.id
              from documents d
             where l.owner_id = :owner and l.target_document_id is null
               and d.owner_id = :owner and d.path <@ cast(:subtree as ltree)
               and (lower(l.link_text) = lower(d.title) or l.link_text = d.path::text)
            """
        ),
        {"owner": owner_id, "subtree": subtree},
    )
    return result.rowcount  # type: ignore[attr-defined]


async def backlinks(
    *, session: AsyncSession, owner_id: uuid.UUID, document_id: uuid.UUID
) -> list[LinkView]:
    """Documents linking to this one, by path; [] for another user's document."""
    result = await session.execute(
        text(
            """
            select s.id, s.path::text, s.title, l.link_text
              from document_links l
              join documents s on s.id = l.source_document_id and s.owner_id = :owner
             where l.owner_id = :owner and l.target_document_id = :doc
             order by s.path
            """
        ),
        {"owner": owner_id, "doc": document_id},
    )
    return [LinkView(*row) for row in result.all()]


async def outgoing_links(
    *, session: AsyncSession, owner_id: uuid.UUID, document_id: uuid.UUID
) -> list[LinkView]:
    """The document's links; unresolved ones have no id, path or title."""
    result = await session.execute(
        text(
            """
            select t.id, t.path::text, t.title, l.link_text
              from document_links l
              left join documents t on t.id = l.target_document_id and t.owner_id = :owner
             where l.owner_id = :owner and l.source_document_id = :doc
             order by lower(l.link_text)
            """
        ),
        {"owner": owner_id, "doc": document_id},
    )
    return [LinkView(*row) for row in result.all()]
