"""The Knowledge page in the browser: folders, documents, wiki links, search, moves."""

from __future__ import annotations

import uuid

import psycopg
from playwright.sync_api import expect

from tests.e2e.pages import KnowledgePage


def _document(app_server, title: str) -> tuple[str, str, str]:
    """(id, path, content) of the document with that title, straight from the database."""
    with psycopg.connect(app_server.database_url) as connection:
        row = connection.execute(
            "select id::text, path::text, content from documents where title = %s", (title,)
        ).fetchone()
    assert row is not None, f"no document titled {title!r}"
    return row


def test_folder_documents_links_search_and_a_move_keep_the_backlink(page, app_server):
    tag = uuid.uuid4().hex[:5]
    folder, sarah, atlas, archive = (
        f"People {tag}",
        f"Sarah O'Neil {tag}",
        f"Project Atlas {tag}",
        f"Archive {tag}",
    )
    knowledge = KnowledgePage(page).open()

    knowledge.create("folder", folder, inside="Knowledge")
    expect(knowledge.tree_row(folder)).to_have_attribute("data-folder", "true")
    knowledge.create("document", sarah, inside=f"Knowledge / {folder}")
    knowledge.write(f"# {sarah}\n\nMet at the lighthouse conference; likes sailing.")
    knowledge.save()
    assert _document(app_server, sarah)[1].startswith("knowledge.people_")

    knowledge.create("document", atlas, inside="Knowledge")
    knowledge.write(f"# {atlas}\n\nWorking with [[{sarah}]] on the harbour survey.")
    knowledge.page.keyboard.press("Control+s")
    expect(page.get_by_text("Saved", exact=True)).to_be_visible()
    assert f"[[{sarah}]]" in _document(app_server, atlas)[2]

    # The wiki link is clickable in the preview and opens its target.
    page.get_by_role("button", name="Preview").click()
    preview = page.get_by_test_id("document-preview")
    preview.get_by_role("link", name=sarah).click()
    expect(knowledge.title).to_have_text(sarah)
    expect(page.get_by_test_id("backlinks").get_by_role("link", name=atlas)).to_be_visible()

    # A typo still finds the document, with the match highlighted as text.
    results = knowledge.search("lighthuose")
    hit = results.get_by_test_id("search-result").filter(has_text=sarah)
    expect(hit).to_have_count(0)
    results = knowledge.search(f"Sarha O'Neil {tag}")
    hit = results.get_by_test_id("search-result").filter(has_text=sarah)
    expect(hit).to_be_visible()

    # Move the folder (and Sarah with it) into another folder.
    knowledge.create("folder", archive, inside="Knowledge")
    knowledge.tree_row(folder).get_by_role("link").click()
    expect(knowledge.title).to_have_text(folder)
    knowledge.move_to(f"Knowledge / {archive}")
    expect(page.get_by_role("status").filter(has_text="Moved to")).to_be_visible()
    sarah_id, sarah_path, _ = _document(app_server, sarah)
    assert sarah_path.startswith("knowledge.archive_")
    assert ".people_" in sarah_path

    # The backlink survives the move.
    knowledge.open(sarah_id)
    expect(knowledge.title).to_have_text(sarah)
    expect(page.get_by_test_id("backlinks").get_by_role("link", name=atlas)).to_be_visible()
