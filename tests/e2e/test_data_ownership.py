"""Data ownership in Chromium: export my data (progress, then a zip holding my
conversation), and deleting a built-in account (signed out, and it cannot sign in again)."""

from __future__ import annotations

import io
import re
import uuid
import zipfile

from playwright.sync_api import Page, expect

from tests.e2e.pages import SignInPage, SignUpPage

PASSWORD = "a long enough passphrase 42"


def _new_account(browser, app_server) -> tuple[object, Page, str]:
    context = browser.new_context(base_url=app_server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    email = f"owner-{uuid.uuid4().hex[:8]}@example.com"
    SignUpPage(page).open().sign_up(email=email, password=PASSWORD, name="Owner")
    page.wait_for_url(f"{app_server.url}/")
    return context, page, email


def test_export_shows_progress_and_downloads_a_zip_with_my_conversation(browser, app_server):
    context, page, _ = _new_account(browser, app_server)
    words = f"Remember the plum tree {uuid.uuid4().hex[:6]}"
    box = page.get_by_test_id("composer-input")
    box.fill(words)
    box.press("Enter")
    page.wait_for_url(re.compile(r".*/chat/[0-9a-f-]{36}$"))
    expect(page.get_by_test_id("assistant-message").last).to_have_attribute(
        "data-status", "complete", timeout=30_000
    )

    page.goto("/account")
    card = page.get_by_test_id("export-card")
    expect(card).to_contain_text("You have not exported your data yet.")
    card.get_by_role("button", name="Export my data").click()
    expect(page.get_by_test_id("export-progress").or_(page.get_by_test_id("export-download")))
    download_link = page.get_by_test_id("export-download")
    expect(download_link).to_be_visible(timeout=60_000)

    with page.expect_download() as waiting:
        download_link.click()
    download = waiting.value
    assert download.suggested_filename.startswith("carmenta-export-")
    archive = zipfile.ZipFile(io.BytesIO(open(download.path(), "rb").read()))
    conversations = [name for name in archive.namelist() if name.startswith("conversations/")]
    assert any(words in archive.read(name).decode() for name in conversations)
    context.close()


def test_deleting_a_built_in_account_signs_out_and_it_cannot_sign_in_again(browser, app_server):
    context, page, email = _new_account(browser, app_server)
    page.goto("/account")
    page.get_by_role("button", name="Delete my account…").click()
    dialog = page.get_by_role("alertdialog")
    dialog.get_by_label("Confirmation").fill("delete my account")
    dialog.get_by_label("Password").fill("not the password")
    dialog.get_by_role("button", name="Delete account").click()
    expect(dialog.get_by_test_id("form-error")).to_contain_text("password")

    dialog.get_by_label("Password").fill(PASSWORD)
    dialog.get_by_role("button", name="Delete account").click()
    page.wait_for_url(re.compile(r"/sign-in"))
    page.goto("/account")
    page.wait_for_url(re.compile(r"/sign-in\?next="))

    SignInPage(page).expect_open().sign_in(email=email, password=PASSWORD)
    expect(page.get_by_test_id("form-error")).to_have_text(
        "That email and password do not match an account."
    )
    context.close()
