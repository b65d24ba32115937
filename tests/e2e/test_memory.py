"""The Memory page in the browser: add, edit, pin, search and delete memories."""

from __future__ import annotations

import uuid

import psycopg
from playwright.sync_api import expect

from tests.e2e.pages import MemoryPage


def _memory(app_server, content_like: str) -> tuple[str, str, bool] | None:
    with psycopg.connect(app_server.database_url) as connection:
        return connection.execute(
            "select content, kind, pinned from memories where content like %s",
            (f"%{content_like}%",),
        ).fetchone()


def test_add_edit_pin_and_delete_a_memory(page, app_server):
    tag = uuid.uuid4().hex[:6]
    memory = MemoryPage(page).open()
    memory.add(f"Prefers window seats on trains {tag}", kind="Preference")
    row = memory.row(tag)
    expect(row).to_contain_text("Preference")
    expect(row).to_contain_text("Added by you")
    expect(row).to_contain_text("100% sure")
    assert _memory(app_server, tag)[:2] == (f"Prefers window seats on trains {tag}", "preference")

    # Edit inline.
    row.get_by_role("button", name=f"Edit: Prefers window seats on trains {tag}").click()
    editor = row.get_by_role("textbox", name="Memory text")
    editor.fill(f"Prefers aisle seats on trains {tag}")
    row.get_by_role("button", name="Save").click()
    expect(memory.row(f"aisle seats on trains {tag}")).to_be_visible(timeout=30_000)
    assert _memory(app_server, tag)[0] == f"Prefers aisle seats on trains {tag}"

    # Pin: it is listed first and marked.
    memory.add(f"Has a cat called Miso {tag}")
    row = memory.row(f"aisle seats on trains {tag}")
    row.get_by_role("button", name=f"Pin: Prefers aisle seats on trains {tag}").click()
    expect(row).to_have_attribute("data-pinned", "true")
    expect(page.get_by_test_id("memory-row").first).to_contain_text("aisle seats")
    assert _memory(app_server, f"aisle seats on trains {tag}")[2] is True

    # Search narrows the list.
    page.get_by_role("searchbox", name="Search memories").fill(f"Miso {tag}")
    page.get_by_role("search").get_by_role("button", name="Search").click()
    expect(memory.row(f"Miso {tag}")).to_be_visible()
    expect(memory.row(f"aisle seats on trains {tag}")).to_have_count(0)
    page.get_by_role("button", name="Show all").click()
    expect(memory.row(f"aisle seats on trains {tag}")).to_be_visible()

    # Delete asks first.
    row = memory.row(f"aisle seats on trains {tag}")
    row.get_by_role("button", name=f"Delete: Prefers aisle seats on trains {tag}").click()
    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_contain_text("Delete this memory?")
    dialog.get_by_role("button", name="Keep it").click()
    expect(dialog).to_be_hidden()
    assert _memory(app_server, f"aisle seats on trains {tag}") is not None
    row.get_by_role("button", name=f"Delete: Prefers aisle seats on trains {tag}").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status").filter(has_text="Memory deleted.")).to_be_visible()
    expect(memory.row(f"aisle seats on trains {tag}")).to_have_count(0)
    assert _memory(app_server, f"aisle seats on trains {tag}") is None


def test_a_blank_memory_is_refused_and_the_form_keeps_its_text(page, app_server):
    memory = MemoryPage(page).open()
    form = page.get_by_role("form", name="Add a memory")
    box = form.get_by_role("textbox", name="New memory")
    box.fill("   \n  ")
    form.get_by_role("button", name="Remember").click()
    expect(form.get_by_role("alert")).to_contain_text("A memory needs some words.")
    expect(box).to_have_value("   \n  ")
    expect(memory.row("needs some words")).to_have_count(0)
