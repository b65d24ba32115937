"""The admin console in the browser: an admin finds, edits and sees the audit trail."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import psycopg
from playwright.sync_api import expect

from tests.e2e.conftest import E2E_ADMIN_EMAIL
from tests.e2e.pages import SignUpPage

SCREENSHOTS = Path(__file__).resolve().parents[2] / ".data" / "e2e-screenshots"


def test_admin_searches_users_edits_a_title_and_sees_the_audit_entry(
    browser, app_server, page, account
):
    # The normal user's conversation, made directly: the admin will rename it.
    with psycopg.connect(app_server.database_url) as connection:
        owner_id = connection.execute(
            "select id from users where email = %s", (account.email,)
        ).fetchone()[0]
        conversation_id = connection.execute(
            "insert into conversations (owner_id, title) values (%s, 'Holiday ideas') returning id",
            (owner_id,),
        ).fetchone()[0]

    # A normal user sees no Admin entry and gets a plain 404 from the console.
    page.goto("/")
    page.get_by_role("button", name="Account menu").click()
    expect(page.get_by_role("menuitem", name="Account")).to_be_visible()
    expect(page.get_by_role("menuitem", name="Admin")).to_have_count(0)
    page.keyboard.press("Escape")
    response = page.goto("/admin/")
    assert response is not None and response.status == 404
    response = page.goto(f"/admin/conversation/edit?pk={conversation_id}")
    assert response is not None and response.status == 404

    context = browser.new_context(base_url=app_server.url, viewport={"width": 1280, "height": 800})
    admin = context.new_page()
    admin.set_default_timeout(20_000)
    with psycopg.connect(app_server.database_url) as connection:
        connection.execute("delete from users where email = %s", (E2E_ADMIN_EMAIL,))
        connection.execute("delete from password_credentials where email = %s", (E2E_ADMIN_EMAIL,))
    SignUpPage(admin).open().sign_up(
        email=E2E_ADMIN_EMAIL, password="an admin's long passphrase 9", name="Root"
    )
    admin.wait_for_url(f"{app_server.url}/")

    admin.get_by_role("button", name="Account menu").click()
    admin.get_by_role("menuitem", name="Admin").click()
    admin.wait_for_url(re.compile(r"/admin/$"))
    expect(admin.get_by_text("Carmenta admin").first).to_be_visible()

    admin.goto("/admin/user/list")
    admin.get_by_role("searchbox").or_(admin.get_by_placeholder("Search...")).first.fill(
        account.email
    )
    admin.keyboard.press("Enter")
    expect(admin.get_by_role("cell", name=account.email)).to_be_visible()
    expect(admin.get_by_role("cell", name=E2E_ADMIN_EMAIL)).to_have_count(0)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    admin.screenshot(path=str(SCREENSHOTS / "admin-users.png"), full_page=True)

    admin.goto(f"/admin/conversation/edit?pk={conversation_id}")
    title = admin.get_by_label("Title", exact=True)
    expect(title).to_have_value("Holiday ideas")
    new_title = f"Holiday ideas (checked {uuid.uuid4().hex[:6]})"
    title.fill(new_title)
    admin.screenshot(path=str(SCREENSHOTS / "admin-edit.png"), full_page=True)
    admin.get_by_role("button", name=re.compile(r"^Save$")).click()
    admin.wait_for_url(re.compile(r"/admin/conversation/list"))
    expect(admin.get_by_text(new_title).first).to_be_visible()

    admin.goto("/admin/audit-log/list")
    expect(admin.get_by_text(new_title).first).to_be_visible()
    expect(admin.get_by_text("conversations").first).to_be_visible()
    admin.screenshot(path=str(SCREENSHOTS / "admin-audit.png"), full_page=True)
    context.close()

    with psycopg.connect(app_server.database_url) as connection:
        title_now = connection.execute(
            "select title from conversations where id = %s", (conversation_id,)
        ).fetchone()[0]
    assert title_now == new_title
