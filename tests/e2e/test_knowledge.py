"""The Knowledge page in the browser: folders, documents, wiki links, search, moves."""

from __future__ import annotations

import re
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

    # A word of the text finds it, the match highlighted as a text segment.
    results = knowledge.search("lighthouse")
    hit = results.get_by_test_id("search-result").filter(has_text=sarah)
    expect(hit.locator("mark")).to_have_text("lighthouse")
    # A typo in the title still finds it.
    results = knowledge.search(f"Sarha {tag}")
    # Project Atlas links to her, so its snippet may name her too: pick her own result.
    hit = results.get_by_test_id("search-result").filter(
        has=page.get_by_role("link", name=sarah, exact=True)
    )
    expect(hit).to_be_visible()
    hit.get_by_role("link", name=sarah).click()
    expect(knowledge.title).to_have_text(sarah)

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


def test_a_5_mb_paste_is_refused_with_the_limit_and_the_text_is_kept(page, app_server):
    title = f"Big paste {uuid.uuid4().hex[:5]}"
    knowledge = KnowledgePage(page).open()
    knowledge.create("document", title, inside="Knowledge")
    huge = "All work and no play. " * 240_000  # about 5.3 MB
    knowledge.editor.fill(huge)
    error = page.get_by_test_id("size-error")
    expect(error).to_contain_text("the limit is 1 MB")
    knowledge.page.get_by_test_id("save-document").click()
    expect(error).to_be_visible()
    expect(page.get_by_text("Unsaved changes")).to_be_visible()
    assert knowledge.editor.evaluate("element => element.value.length") == len(huge)
    # Nothing was written: the document keeps the text it was created with.
    assert _document(app_server, title)[2] == f"# {title}\n\n"
    # Shortened below the limit, the same text saves.
    knowledge.editor.fill(huge[:200_000])
    expect(error).to_be_hidden()
    knowledge.save()
    assert len(_document(app_server, title)[2]) == 200_000


def test_raw_html_in_a_document_is_shown_inert_in_the_preview(page, app_server):
    title = f"Html {uuid.uuid4().hex[:5]}"
    knowledge = KnowledgePage(page).open()
    knowledge.create("document", title, inside="Knowledge")
    knowledge.write(
        '<img src=x onerror="window.__injected = 1"><script>window.__injected = 2</script>'
        "\n\n**bold** text"
    )
    page.get_by_role("button", name="Preview").click()
    preview = page.get_by_test_id("document-preview")
    expect(preview.locator("strong")).to_have_text("bold")
    expect(preview.locator("img")).to_have_count(0)
    expect(preview.locator("script")).to_have_count(0)
    assert page.evaluate("window.__injected") is None
    # Back in the editor, the unsaved text is still there.
    page.get_by_role("button", name="Edit").click()
    expect(knowledge.editor).to_have_value(re.compile("window.__injected = 2"))


def test_deleting_a_folder_states_how_many_documents_go(page, app_server):
    tag = uuid.uuid4().hex[:5]
    knowledge = KnowledgePage(page).open()
    knowledge.create("folder", f"Trips {tag}", inside="Knowledge")
    knowledge.create("document", f"Lisbon {tag}", inside=f"Knowledge / Trips {tag}")
    knowledge.create("document", f"Porto {tag}", inside=f"Knowledge / Trips {tag}")
    knowledge.tree_row(f"Trips {tag}").get_by_role("link").click()
    expect(knowledge.title).to_have_text(f"Trips {tag}")
    page.get_by_role("button", name="Delete", exact=True).click()
    dialog = page.get_by_role("alertdialog")
    expect(dialog.get_by_test_id("delete-count")).to_contain_text("3 documents")
    dialog.get_by_role("button", name="Keep it").click()
    expect(dialog).to_be_hidden()
    page.get_by_role("button", name="Delete", exact=True).click()
    page.get_by_role("alertdialog").get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status").filter(has_text="deleted with 2 more")).to_be_visible()
    expect(knowledge.tree_row(f"Trips {tag}")).to_have_count(0)
    with psycopg.connect(app_server.database_url) as connection:
        left = connection.execute(
            "select count(*) from documents where title like %s", (f"% {tag}",)
        ).fetchone()[0]
    assert left == 0


def test_folders_expand_and_collapse_by_keyboard(page):
    tag = uuid.uuid4().hex[:5]
    knowledge = KnowledgePage(page).open()
    knowledge.create("folder", f"Recipes {tag}", inside="Knowledge")
    knowledge.create("document", f"Soup {tag}", inside=f"Knowledge / Recipes {tag}")
    toggle = page.get_by_role("button", name=f"Collapse Recipes {tag}")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    toggle.focus()
    page.keyboard.press("Enter")
    expand = page.get_by_role("button", name=f"Expand Recipes {tag}")
    expect(expand).to_have_attribute("aria-expanded", "false")
    expect(knowledge.tree_row(f"Soup {tag}")).to_have_count(0)
    expand.focus()
    page.keyboard.press("Space")
    expect(knowledge.tree_row(f"Soup {tag}")).to_be_visible()


def test_the_page_fits_a_phone_and_opens_a_document_by_its_address(phone_page, app_server, account):
    with psycopg.connect(app_server.database_url) as connection:
        identity_id = connection.execute(
            "select d.id::text from documents d join users u on u.id = d.owner_id"
            " where d.path = 'profile.identity' and u.email = %s",
            (account.email,),
        ).fetchone()[0]
    knowledge = KnowledgePage(phone_page).open(identity_id)
    expect(knowledge.title).to_have_text("Identity")
    expect(phone_page.get_by_role("button", name="Move", exact=True)).to_have_count(0)
    expect(phone_page.get_by_role("button", name="Delete", exact=True)).to_have_count(0)
    width = phone_page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
