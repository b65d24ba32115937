"""Searching the user's documents: full text, plus trigram matching for typos.

The full-text part uses the GIN index on the generated `search_vector` with
`websearch_to_tsquery`, which accepts anything a person types (operators and quotes
included) without raising. Titles and each document's own path label are also compared
by trigram word similarity, so "Sarha" still finds "Sarah O'Neil".
"""

from __future__ import annotations

import unicodedata
import uuid
from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta import db
from carmenta.knowledge.paths import InvalidPath, validate_path

MAX_QUERY_CHARS = 500
MAX_LIMIT = 100
# word_similarity of a five-letter word with one transposition is 0.5; 0.45 admits
# that and keeps unrelated titles out.
TITLE_SIMILARITY_THRESHOLD = 0.45
# A typo match counts for less than a full-text match of the same strength.
SIMILARITY_WEIGHT = 0.5
# Most matches ranked per search, full-text and typo each: bounds the time a very
# common word takes (ranking reads each match's whole search vector).
MAX_RANKED_CANDIDATES = 200


@dataclass(frozen=True)
class SearchHit:
    id: uuid.UUID
    path: str
    title: str
    snippet: str
    rank: float
    matched_by: str  # "text" or "title_similarity"


def clean_query(query: str) -> str:
    """The query as safe text: valid UTF-8, no control characters, bounded length."""
    # Lone surrogates cannot be sent to the database; NUL is refused by PostgreSQL.
    text_ = query.encode("utf-8", "replace").decode("utf-8")
    text_ = "".join(" " if unicodedata.category(char).startswith("C") else char for char in text_)
    return " ".join(text_.split())[:MAX_QUERY_CHARS]


# `<%` admits what scores at least this, on every connection; the strict threshold is
# applied in the statement.
db.set_on_every_connection("pg_trgm.word_similarity_threshold", str(TITLE_SIMILARITY_THRESHOLD))

SEARCH_SQL = db.driver_sql(
    """
    with q as (select websearch_to_tsquery('english', :query) as tsq),
    -- A word found in thousands of documents would have every one of them ranked; the
    -- first :candidates matches are ranked instead, together with up to :candidates
    -- names (title and path label) that look like the query, each ranked in full, so
    -- a title naming the query is not lost among them. Below the caps nothing changes.
    -- Each candidate is ranked from the row its own index scan read, not fetched again.
    text_matches as (
        select d.id, ts_rank_cd(d.search_vector, q.tsq, 32) as rank
          from documents d, q
         where d.owner_id = :owner
           and d.search_vector @@ q.tsq
           and (cast(:subtree as ltree) is null or d.path <@ cast(:subtree as ltree))
         limit :candidates
    ),
    fuzzy_hits as (
        -- Only names sharing trigrams with the query (found through the trigram index)
        -- can pass the threshold. A name is the title and the document's own path
        -- label, which pg_trgm reads as words ('_' breaks them); not the whole path: a
        -- folder's name would match everything filed under it.
        select c.id, c.similarity,
               case when c.search_vector @@ q.tsq
                    then ts_rank_cd(c.search_vector, q.tsq, 32) end as rank
          from (select d.id, d.search_vector,
                       word_similarity(:query, d.title || ' ' || subpath(d.path, -1)::text)
                           as similarity
                  from documents d
                 where d.owner_id = :owner
                   and :query <% (d.title || ' ' || subpath(d.path, -1)::text)
                   and (cast(:subtree as ltree) is null or d.path <@ cast(:subtree as ltree))
                 limit :candidates) c, q
         where c.similarity > :threshold
    ),
    merged as (
        select coalesce(t.id, f.id) as id, coalesce(t.rank, f.rank) as rank, f.similarity
          from text_matches t full join fuzzy_hits f on f.id = t.id
    ),
    ranked as (
        select m.id,
               coalesce(m.rank, 0) + :weight * coalesce(m.similarity, 0) as score,
               m.rank is not null as by_text
          from merged m
         -- Equal scores in a stable order, so the cut at :limit is the same each time.
         order by score desc, m.id
         limit :limit
    )
    select d.id, d.path::text as path, d.title,
           -- The snippet is shown as HTML: the content is escaped, only <mark> is added.
           ts_headline('english',
                       replace(replace(replace(left(d.content, 100000), '&', '&amp;'),
                                       '<', '&lt;'), '>', '&gt;'),
                       q.tsq,
                       'StartSel=<mark>, StopSel=</mark>, MaxWords=35, MinWords=12, '
                       'MaxFragments=2, FragmentDelimiter=" … "') as snippet,
           r.score, r.by_text
      from ranked r
      join documents d on d.id = r.id, q
     order by r.score desc, d.path
    """
)


async def search_documents(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    query: str,
    subtree: str | None = None,
    limit: int = 20,
) -> list[SearchHit]:
    """The owner's documents matching `query`, best first; [] for an empty query."""
    cleaned = clean_query(query)
    if not cleaned:
        return []
    if subtree is not None:
        try:
            validate_path(subtree)
        except InvalidPath:
            return []
    # Straight through the driver: SQLAlchemy's statement and result layers would cost
    # about a tenth of the search itself.
    connection = await db.driver_connection(session)
    cursor = await connection.execute(
        SEARCH_SQL,
        {
            "owner": owner_id,
            "query": cleaned,
            "subtree": subtree,
            "threshold": TITLE_SIMILARITY_THRESHOLD,
            "weight": SIMILARITY_WEIGHT,
            "limit": max(1, min(limit, MAX_LIMIT)),
            "candidates": MAX_RANKED_CANDIDATES,
        },
    )
    return [
        SearchHit(
            id=id_,
            path=path,
            title=title,
            snippet=snippet,
            rank=float(score),
            matched_by="text" if by_text else "title_similarity",
        )
        for id_, path, title, snippet, score, by_text in await cursor.fetchall()
    ]
