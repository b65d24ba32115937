"""Document search against a real PostgreSQL: ranking, typos, subtrees, hostile input
and per-user isolation."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from carmenta.knowledge.search import search_documents
from carmenta.knowledge.service import create_document


async def _user(session) -> uuid.UUID:
    user_id = uuid.uuid4()
    await session.execute(
        text(
            "insert into users (id, external_auth_id, auth_provider)"
            " values (:id, :external, 'builtin')"
        ),
        {"id": user_id, "external": f"test-{user_id}"},
    )
    return user_id


async def _library(session, owner):
    people = await create_document(
        session=session, owner_id=owner, parent_path=None, title="People"
    )
    sarah = await create_document(
        session=session,
        owner_id=owner,
        parent_path=people.path,
        title="Sarah O'Neil",
        content="Architect in Dublin. Loves sourdough and <b>bold</b> ideas.",
    )
    recipes = await create_document(
        session=session, owner_id=owner, parent_path=None, title="Recipes"
    )
    bread = await create_document(
        session=session,
        owner_id=owner,
        parent_path=recipes.path,
        title="Sourdough bread",
        content="Feed the starter the night before. Bake at 250 degrees.",
    )
    diary = await create_document(
        session=session,
        owner_id=owner,
        parent_path=None,
        title="Diary",
        content=(
            "A long day of meetings about budgets, schedules and hiring. "
            "In passing, someone mentioned sourdough at lunch. " + "Nothing else happened. " * 30
        ),
    )
    return {"sarah": sarah, "bread": bread, "diary": diary}


async def test_a_title_match_outranks_a_passing_mention(session):
    owner = await _user(session)
    docs = await _library(session, owner)
    hits = await search_documents(session=session, owner_id=owner, query="sourdough")
    ids = [hit.id for hit in hits]
    assert ids[0] == docs["bread"].id
    assert docs["diary"].id in ids
    assert ids.index(docs["bread"].id) < ids.index(docs["diary"].id)
    assert all(hit.matched_by == "text" for hit in hits)
    assert hits[0].rank > hits[-1].rank


async def test_snippets_highlight_matches_and_escape_html(session):
    owner = await _user(session)
    docs = await _library(session, owner)
    hits = await search_documents(session=session, owner_id=owner, query="architect")
    assert [hit.id for hit in hits] == [docs["sarah"].id]
    assert "<mark>Architect</mark>" in hits[0].snippet
    hits = await search_documents(session=session, owner_id=owner, query="bold ideas")
    assert "&lt;b&gt;" in hits[0].snippet and "<b>" not in hits[0].snippet


async def test_a_typo_in_a_title_still_finds_the_document(session):
    owner = await _user(session)
    docs = await _library(session, owner)
    hits = await search_documents(session=session, owner_id=owner, query="Sarha")
    assert hits and hits[0].id == docs["sarah"].id
    assert hits[0].matched_by == "title_similarity"
    hits = await search_documents(session=session, owner_id=owner, query="sourdoug bred")
    assert docs["bread"].id in [hit.id for hit in hits]


async def test_a_misspelt_path_label_finds_its_document(session):
    owner = await _user(session)
    roadmap = await create_document(
        session=session, owner_id=owner, parent_path=None, title="Quarterly roadmap"
    )
    # A title that no longer says what the label does (a profile document, a file's).
    await session.execute(
        text("update documents set title = 'Q3 plan' where id = :id"), {"id": roadmap.id}
    )
    hits = await search_documents(session=session, owner_id=owner, query="quartely roadmap")
    assert [hit.id for hit in hits] == [roadmap.id]
    assert hits[0].matched_by == "title_similarity"


async def test_a_misspelt_folder_name_finds_the_folder_not_everything_filed_in_it(session):
    owner = await _user(session)
    recipes = await create_document(
        session=session, owner_id=owner, parent_path=None, title="Recipes"
    )
    for title in ("Pho", "Lentil soup", "Flatbread"):
        await create_document(
            session=session,
            owner_id=owner,
            parent_path=recipes.path,
            title=title,
            content="Simmer slowly and season at the end.",
        )
    hits = await search_documents(session=session, owner_id=owner, query="Recipies")
    assert [hit.id for hit in hits] == [recipes.id]
    # What is filed in it is found by its own words.
    hits = await search_documents(session=session, owner_id=owner, query="simmer")
    assert len(hits) == 3


async def test_search_can_be_limited_to_a_subtree(session):
    owner = await _user(session)
    docs = await _library(session, owner)
    hits = await search_documents(
        session=session, owner_id=owner, query="sourdough", subtree="knowledge.people"
    )
    assert [hit.id for hit in hits] == [docs["sarah"].id]
    hits = await search_documents(
        session=session, owner_id=owner, query="sourdough", subtree="knowledge.recipes"
    )
    assert [hit.id for hit in hits] == [docs["bread"].id]
    assert (
        await search_documents(
            session=session, owner_id=owner, query="sourdough", subtree="not a path!"
        )
        == []
    )


@pytest.mark.parametrize("query", ["", "   ", "\n\t", "\x00"])
async def test_an_empty_query_returns_nothing(session, query):
    owner = await _user(session)
    await _library(session, owner)
    assert await search_documents(session=session, owner_id=owner, query=query) == []


@pytest.mark.parametrize(
    "query",
    [
        "& | ! :*",
        "sourdough & | ! :* ' \" ( ) <-> <2>",
        '"unterminated',
        "'sourdough':* & !bread",
        "!!!!",
        "-",
        "or and not",
        "\\",
        "%_%",
        "sour\x00dough",
        "\ud800 lone surrogate",
        "Ünïcödé 日本語 🙂 ",
        "a" * 10_000,
        "sourdough " * 2_000,
        "$$; drop table documents; --",
    ],
)
async def test_hostile_queries_never_raise(session, query):
    owner = await _user(session)
    await _library(session, owner)
    hits = await search_documents(session=session, owner_id=owner, query=query)
    assert isinstance(hits, list)


async def test_search_is_per_user(session):
    alice = await _user(session)
    bob = await _user(session)
    await _library(session, alice)
    assert await search_documents(session=session, owner_id=bob, query="sourdough") == []
    assert await search_documents(session=session, owner_id=bob, query="Sarha") == []
    mine = await create_document(
        session=session, owner_id=bob, parent_path=None, title="Sourdough", content="Mine."
    )
    hits = await search_documents(session=session, owner_id=bob, query="sourdough")
    assert [hit.id for hit in hits] == [mine.id]


async def test_the_text_search_can_use_the_gin_index(session):
    owner = await _user(session)
    await _library(session, owner)
    await session.execute(text("set local enable_seqscan = off"))
    plan = await session.execute(
        text(
            "explain select id from documents"
            " where search_vector @@ websearch_to_tsquery('english', 'sourdough')"
        )
    )
    assert "ix_documents_search_vector" in "\n".join(row[0] for row in plan.all())
    # The typo match's condition, as search.py writes it.
    trigram_plan = await session.execute(
        text(
            "explain select id from documents"
            " where 'sarha' <% (title || ' ' || subpath(path, -1)::text)"
        )
    )
    assert "ix_documents_name_trgm" in "\n".join(row[0] for row in trigram_plan.all())
