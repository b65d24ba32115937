"""Files in the knowledge base, in the browser: add, see it in, replace, see it re-added."""

from __future__ import annotations

import re
import uuid

import psycopg
from playwright.sync_api import expect


def _document(app_server, name: str) -> tuple[str, str] | None:
    with psycopg.connect(app_server.database_url) as connection:
        row = connection.execute(
            "select d.id::text, d.content from documents d join files f"
            " on f.id = d.source_file_id where f.original_name = %s",
            (name,),
        ).fetchone()
    return (row[0], row[1]) if row else None


def test_add_a_text_file_to_knowledge_then_replace_it_and_see_it_added_again(
    page, app_server, tmp_path
):
    name = f"garden notes {uuid.uuid4().hex[:6]}.txt"
    notes = tmp_path / name
    notes.write_text("Tomatoes need sun.\n\nWater the basil every morning.\n")
    page.goto("/files")
    page.get_by_test_id("file-input").first.set_input_files(str(notes))
    row = page.get_by_test_id("file-row").filter(has_text=name)
    expect(row).to_have_attribute("data-status", "ready", timeout=60_000)

    status = row.get_by_test_id("knowledge-status")
    row.get_by_role("button", name=f"Add {name} to knowledge").click()
    expect(status).to_have_attribute("data-state", "ready", timeout=60_000)
    expect(status).to_contain_text("In knowledge")
    document_id, content = _document(app_server, name)
    assert "Water the basil every morning." in content
    expect(row.get_by_role("link", name=f"Open {name} in knowledge")).to_have_attribute(
        "href", re.compile(rf"/knowledge\?doc={document_id}$")
    )
    page.screenshot(path=str(tmp_path / "in-knowledge.png"), full_page=True)

    row.get_by_role("button", name=f"Replace {name}").click()
    dialog = page.get_by_test_id("replace-dialog")
    expect(dialog).to_contain_text(f"Replace {name}")
    page.screenshot(path=str(tmp_path / "replace-dialog.png"), full_page=True)
    notes.write_text("Tomatoes need sun.\n\nPick the beans on Fridays.\n")
    dialog.get_by_test_id("file-input").set_input_files(str(notes))
    expect(dialog).to_be_hidden(timeout=20_000)
    expect(page.get_by_role("status").filter(has_text="was replaced")).to_be_visible()

    # Read again, then added again: the same document, with the new text.
    expect(status).to_have_attribute("data-state", "ready", timeout=60_000)
    for _ in range(100):
        found = _document(app_server, name)
        if found and "Pick the beans on Fridays." in found[1]:
            break
        page.wait_for_timeout(200)
    assert found == (document_id, "Tomatoes need sun.\n\nPick the beans on Fridays.")
    expect(row.get_by_role("link", name=f"Open {name} in knowledge")).to_have_attribute(
        "href", re.compile(rf"/knowledge\?doc={document_id}$")
    )
    page.screenshot(path=str(tmp_path / "replaced.png"), full_page=True)

    # Removing it from the knowledge base keeps the file.
    row.get_by_role("button", name=f"Remove {name} from knowledge").click()
    expect(status).to_have_attribute("data-state", "none")
    expect(row.get_by_role("button", name=f"Add {name} to knowledge")).to_be_visible()
    assert _document(app_server, name) is None
    expect(row).to_have_attribute("data-status", "ready")


def test_the_knowledge_controls_fit_a_phone(phone_page, tmp_path):
    name = f"phone notes {uuid.uuid4().hex[:6]}.txt"
    notes = tmp_path / name
    notes.write_text("A short note read on a phone.\n")
    phone_page.goto("/files")
    phone_page.get_by_test_id("file-input").first.set_input_files(str(notes))
    row = phone_page.get_by_test_id("file-row").filter(has_text=name)
    expect(row).to_have_attribute("data-status", "ready", timeout=60_000)
    row.get_by_role("button", name=f"Add {name} to knowledge").click()
    expect(row.get_by_test_id("knowledge-status")).to_have_attribute(
        "data-state", "ready", timeout=60_000
    )
    width = phone_page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
    phone_page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
