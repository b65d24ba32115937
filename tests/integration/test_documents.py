"""Documents against a real PostgreSQL: paths, subtree renames, moves and deletes,
wiki links that survive them, chunking, size limits and per-user isolation."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from carmenta.knowledge.links import backlinks, outgoing_links, parse_wiki_links
from carmenta.knowledge.paths import InvalidPath, path_from_titles
from carmenta.knowledge.service import (
    CHUNK_TARGET_CHARS,
    MAX_CONTENT_BYTES,
    DocumentConflict,
    DocumentTooLarge,
    create_document,
    delete_subtree,
    get_by_path,
    get_document,
    list_tree,
    move_subtree,
    rechunk_document,
    rename_document,
    seed_profile,
    split_into_chunks,
    subtree_size,
    update_document,
)


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


async def _paths(session, owner_id, root=None) -> list[str]:
    return [doc.path for doc in await list_tree(session=session, owner_id=owner_id, root=root)]


async def test_knowledge_people_sarah_round_trip(session):
    owner = await _user(session)
    people = await create_document(
        session=session, owner_id=owner, parent_path="knowledge", title="People"
    )
    sarah = await create_document(
        session=session,
        owner_id=owner,
        parent_path=people.path,
        title="Sarah O'Neil",
        content="Met at the conference.",
    )
    assert sarah.path == path_from_titles(["Knowledge", "People", "Sarah O'Neil"])
    assert sarah.title == "Sarah O'Neil"
    assert sarah.depth == 3
    assert sarah.source == "manual"
    found = await get_by_path(session=session, owner_id=owner, path=sarah.path)
    assert found == sarah
    assert await get_document(session=session, owner_id=owner, document_id=sarah.id) == sarah
    assert await _paths(session, owner) == ["knowledge.people", "knowledge.people.sarah_o_neil"]


async def test_a_taken_path_gets_a_numbered_suffix(session):
    owner = await _user(session)
    first = await create_document(session=session, owner_id=owner, parent_path=None, title="Ideas")
    second = await create_document(
        session=session, owner_id=owner, parent_path=None, title="ideas!"
    )
    third = await create_document(session=session, owner_id=owner, parent_path=None, title="IDEAS")
    assert [first.path, second.path, third.path] == [
        "knowledge.ideas",
        "knowledge.ideas_2",
        "knowledge.ideas_3",
    ]


async def test_bad_input_is_refused_with_a_clear_message(session):
    owner = await _user(session)
    with pytest.raises(InvalidPath, match="no letters or digits"):
        await create_document(session=session, owner_id=owner, parent_path=None, title="!!!")
    with pytest.raises(InvalidPath, match="must start with"):
        await create_document(session=session, owner_id=owner, parent_path="notes", title="x")
    with pytest.raises(DocumentTooLarge, match=r"5\.0 MB; the limit is 1 MB"):
        await create_document(
            session=session,
            owner_id=owner,
            parent_path=None,
            title="Huge",
            content="x" * 5_000_000,
        )
    doc = await create_document(session=session, owner_id=owner, parent_path=None, title="Small")
    with pytest.raises(DocumentTooLarge, match="limit is 1 MB"):
        await update_document(
            session=session,
            owner_id=owner,
            document_id=doc.id,
            content="é" * (MAX_CONTENT_BYTES // 2 + 1),
        )


async def _tree(session, owner):
    projects = await create_document(
        session=session, owner_id=owner, parent_path=None, title="Projects"
    )
    garden = await create_document(
        session=session, owner_id=owner, parent_path=projects.path, title="Garden"
    )
    beds = await create_document(
        session=session, owner_id=owner, parent_path=garden.path, title="Raised beds"
    )
    return projects, garden, beds


async def test_renaming_a_parent_renames_every_descendant_path(session):
    owner = await _user(session)
    projects, garden, beds = await _tree(session, owner)
    renamed = await rename_document(
        session=session, owner_id=owner, document_id=garden.id, new_title="Allotment"
    )
    assert renamed is not None
    assert (renamed.title, renamed.path) == ("Allotment", "knowledge.projects.allotment")
    assert await _paths(session, owner) == [
        "knowledge.projects",
        "knowledge.projects.allotment",
        "knowledge.projects.allotment.raised_beds",
    ]
    moved_beds = await get_document(session=session, owner_id=owner, document_id=beds.id)
    assert moved_beds.title == "Raised beds"


async def test_rename_to_a_taken_name_gets_a_suffix(session):
    owner = await _user(session)
    projects, garden, _ = await _tree(session, owner)
    await create_document(session=session, owner_id=owner, parent_path=projects.path, title="Shed")
    renamed = await rename_document(
        session=session, owner_id=owner, document_id=garden.id, new_title="Shed"
    )
    assert renamed.path == "knowledge.projects.shed_2"


async def test_moving_a_subtree_moves_its_descendants(session):
    owner = await _user(session)
    projects, garden, beds = await _tree(session, owner)
    archive = await create_document(
        session=session, owner_id=owner, parent_path=None, title="Archive"
    )
    moved = await move_subtree(
        session=session, owner_id=owner, document_id=garden.id, new_parent_path=archive.path
    )
    assert moved.path == "knowledge.archive.garden"
    assert await _paths(session, owner, root="knowledge.archive") == [
        "knowledge.archive",
        "knowledge.archive.garden",
        "knowledge.archive.garden.raised_beds",
    ]
    assert await _paths(session, owner, root="knowledge.projects") == ["knowledge.projects"]
    assert (await get_document(session=session, owner_id=owner, document_id=beds.id)).depth == 4


async def test_a_subtree_listing_holds_its_descendants_and_no_look_alike_siblings(session):
    owner = await _user(session)
    for parent, title in (
        (None, "Garden"),
        ("knowledge.garden", "Beds"),
        ("knowledge.garden.beds", "Tomatoes"),
        ("knowledge.garden", "Zucchini"),
        (None, "Garden 2"),  # knowledge.garden_2
        (None, "Garden0"),
        (None, "Gardens"),
        (None, "Garde"),
        ("knowledge.garde", "Notes"),
    ):
        await create_document(session=session, owner_id=owner, parent_path=parent, title=title)
    assert await _paths(session, owner, root="knowledge.garden") == [
        "knowledge.garden",
        "knowledge.garden.beds",
        "knowledge.garden.beds.tomatoes",
        "knowledge.garden.zucchini",
    ]
    assert await _paths(session, owner, root="knowledge.garde") == [
        "knowledge.garde",
        "knowledge.garde.notes",
    ]
    assert await _paths(session, owner, root="knowledge.garden.beds.tomatoes") == [
        "knowledge.garden.beds.tomatoes"
    ]
    assert await _paths(session, owner, root="knowledge.garden0") == ["knowledge.garden0"]
    assert len(await _paths(session, owner, root="knowledge")) == 9


async def test_moves_under_itself_or_onto_another_document_are_refused(session):
    owner = await _user(session)
    projects, garden, beds = await _tree(session, owner)
    with pytest.raises(DocumentConflict, match="under itself"):
        await move_subtree(
            session=session, owner_id=owner, document_id=garden.id, new_parent_path=beds.path
        )
    with pytest.raises(DocumentConflict, match="under itself"):
        await move_subtree(
            session=session, owner_id=owner, document_id=garden.id, new_parent_path=garden.path
        )
    other = await create_document(session=session, owner_id=owner, parent_path=None, title="Other")
    await create_document(session=session, owner_id=owner, parent_path=other.path, title="Garden")
    with pytest.raises(DocumentConflict, match="already there"):
        await move_subtree(
            session=session, owner_id=owner, document_id=garden.id, new_parent_path=other.path
        )
    with pytest.raises(InvalidPath):
        await move_subtree(
            session=session, owner_id=owner, document_id=garden.id, new_parent_path="bad path"
        )
    assert (await get_document(session=session, owner_id=owner, document_id=beds.id)).path == (
        "knowledge.projects.garden.raised_beds"
    )


async def test_delete_subtree_removes_the_document_and_its_descendants(session):
    owner = await _user(session)
    projects, garden, beds = await _tree(session, owner)
    sibling = await create_document(
        session=session, owner_id=owner, parent_path=projects.path, title="Gardening tips"
    )
    assert await subtree_size(session=session, owner_id=owner, document_id=garden.id) == 2
    assert await delete_subtree(session=session, owner_id=owner, document_id=garden.id) == 2
    assert await _paths(session, owner) == ["knowledge.projects", sibling.path]
    assert await delete_subtree(session=session, owner_id=owner, document_id=garden.id) == 0


def test_wiki_links_are_parsed_with_labels_and_once_each():
    markdown = (
        "See [[Sarah O'Neil]] and [[sarah o'neil|her]], [[ Garden  plan |the plan]]. [[]] [x]"
    )
    assert parse_wiki_links(markdown) == ["Sarah O'Neil", "Garden plan"]


async def test_links_resolve_late_and_survive_moves_and_renames(session):
    owner = await _user(session)
    notes = await create_document(
        session=session,
        owner_id=owner,
        parent_path=None,
        title="Meeting notes",
        content="Talked with [[Sarah O'Neil|Sarah]] about [[Garden]].",
    )
    links = await outgoing_links(session=session, owner_id=owner, document_id=notes.id)
    assert [(link.link_text, link.document_id) for link in links] == [
        ("Garden", None),
        ("Sarah O'Neil", None),
    ]
    people = await create_document(
        session=session, owner_id=owner, parent_path=None, title="People"
    )
    sarah = await create_document(
        session=session, owner_id=owner, parent_path=people.path, title="Sarah O'Neil"
    )
    assert [
        b.document_id
        for b in await backlinks(session=session, owner_id=owner, document_id=sarah.id)
    ] == [notes.id]

    archive = await create_document(
        session=session, owner_id=owner, parent_path=None, title="Archive"
    )
    await move_subtree(
        session=session, owner_id=owner, document_id=people.id, new_parent_path=archive.path
    )
    await rename_document(
        session=session, owner_id=owner, document_id=people.id, new_title="Friends"
    )
    await move_subtree(
        session=session, owner_id=owner, document_id=notes.id, new_parent_path=archive.path
    )
    back = await backlinks(session=session, owner_id=owner, document_id=sarah.id)
    assert [(b.document_id, b.path, b.link_text) for b in back] == [
        (notes.id, "knowledge.archive.meeting_notes", "Sarah O'Neil")
    ]
    moved_sarah = await get_document(session=session, owner_id=owner, document_id=sarah.id)
    assert moved_sarah.path == "knowledge.archive.friends.sarah_o_neil"

    # A renamed document picks up links that named its new title.
    garden = await create_document(
        session=session, owner_id=owner, parent_path=None, title="Vegetable patch"
    )
    await rename_document(
        session=session, owner_id=owner, document_id=garden.id, new_title="Garden"
    )
    assert [
        b.document_id
        for b in await backlinks(session=session, owner_id=owner, document_id=garden.id)
    ] == [notes.id]


async def test_editing_content_re_extracts_links(session):
    owner = await _user(session)
    a = await create_document(session=session, owner_id=owner, parent_path=None, title="A")
    b = await create_document(session=session, owner_id=owner, parent_path=None, title="B")
    note = await create_document(
        session=session, owner_id=owner, parent_path=None, title="Note", content="[[A]]"
    )
    await update_document(
        session=session, owner_id=owner, document_id=note.id, content="[[knowledge.b]]"
    )
    assert await backlinks(session=session, owner_id=owner, document_id=a.id) == []
    assert [
        x.document_id for x in await backlinks(session=session, owner_id=owner, document_id=b.id)
    ] == [note.id]
    await delete_subtree(session=session, owner_id=owner, document_id=b.id)
    links = await outgoing_links(session=session, owner_id=owner, document_id=note.id)
    assert [(link.link_text, link.document_id) for link in links] == [("knowledge.b", None)]


async def test_per_user_isolation(session):
    alice = await _user(session)
    bob = await _user(session)
    secret = await create_document(
        session=session, owner_id=alice, parent_path=None, title="Diary", content="[[Diary]]"
    )
    bobs = await create_document(session=session, owner_id=bob, parent_path=None, title="Diary")
    # Same path for two users: no collision, no suffix.
    assert secret.path == bobs.path == "knowledge.diary"

    assert await get_document(session=session, owner_id=bob, document_id=secret.id) is None
    assert (
        await update_document(session=session, owner_id=bob, document_id=secret.id, content="mine")
        is None
    )
    assert (
        await rename_document(
            session=session, owner_id=bob, document_id=secret.id, new_title="Stolen"
        )
        is None
    )
    assert (
        await move_subtree(
            session=session, owner_id=bob, document_id=secret.id, new_parent_path="knowledge.x"
        )
        is None
    )
    assert await delete_subtree(session=session, owner_id=bob, document_id=secret.id) == 0
    assert await subtree_size(session=session, owner_id=bob, document_id=secret.id) == 0
    assert await backlinks(session=session, owner_id=bob, document_id=secret.id) == []
    assert await rechunk_document(session=session, owner_id=bob, document_id=secret.id) == 0
    # Bob's Diary was not linked by Alice's [[Diary]].
    assert await backlinks(session=session, owner_id=bob, document_id=bobs.id) == []
    assert await _paths(session, bob) == ["knowledge.diary"]
    still = await get_document(session=session, owner_id=alice, document_id=secret.id)
    assert (still.title, still.content) == ("Diary", "[[Diary]]")
    chunks = await session.execute(
        text("select count(*) from document_chunks where document_id = :id"), {"id": secret.id}
    )
    assert chunks.scalar_one() == 1


async def test_seed_profile_is_idempotent(session):
    owner = await _user(session)
    first = await seed_profile(session=session, owner_id=owner, display_name="Ada")
    assert [doc.path for doc in first] == [
        "profile.identity",
        "profile.preferences",
        "profile.voice",
    ]
    assert "Ada" in first[0].content
    await update_document(session=session, owner_id=owner, document_id=first[0].id, content="Me")
    again = await seed_profile(session=session, owner_id=owner, display_name="Ada")
    assert [doc.id for doc in again] == [doc.id for doc in first]
    assert again[0].content == "Me"
    # Profile documents keep their fixed paths when retitled.
    renamed = await rename_document(
        session=session, owner_id=owner, document_id=first[2].id, new_title="Tone"
    )
    assert (renamed.title, renamed.path) == ("Tone", "profile.voice")


def test_split_into_chunks_keeps_boundaries_and_overlaps():
    paragraphs = [
        " ".join(f"Paragraph {p} sentence {s} says something useful." for s in range(6))
        for p in range(8)
    ]
    content = "\n\n".join(paragraphs)
    chunks = split_into_chunks(content)
    assert len(chunks) > 1
    assert all(len(chunk) <= CHUNK_TARGET_CHARS + 200 for chunk in chunks)
    for previous, current in zip(chunks, chunks[1:], strict=False):
        # Each chunk starts with a little of the one before.
        assert current.split("\n\n")[0] in previous or current[:40] in previous
    assert all(p.split(".")[0] in content for p in paragraphs)
    joined = " ".join(chunks)
    for p in range(8):
        for s in range(6):
            assert f"Paragraph {p} sentence {s} says" in joined
    assert split_into_chunks("") == []
    assert split_into_chunks("short") == ["short"]
    long_word = "x" * 3000
    assert all(len(chunk) <= CHUNK_TARGET_CHARS + 200 for chunk in split_into_chunks(long_word))


async def test_chunks_are_replaced_on_edit_and_wait_for_embedding(session):
    owner = await _user(session)
    doc = await create_document(
        session=session,
        owner_id=owner,
        parent_path=None,
        title="Long",
        content="\n\n".join(f"Sentence number {i} is here. " * 20 for i in range(5)),
    )
    count_sql = text(
        "select count(*), count(embedding), count(embedded_at), min(ordinal), max(ordinal)"
        " from document_chunks where owner_id = :owner and document_id = :id"
    )
    total, embedded, stamped, low, high = (
        await session.execute(count_sql, {"owner": owner, "id": doc.id})
    ).one()
    assert total > 1 and embedded == 0 and stamped == 0
    assert (low, high) == (0, total - 1)
    await update_document(session=session, owner_id=owner, document_id=doc.id, content="Short.")
    total, *_ = (await session.execute(count_sql, {"owner": owner, "id": doc.id})).one()
    assert total == 1
