"""Built-in accounts in the browser: sign up, stay signed in, sign out, return."""

from __future__ import annotations

import re
import uuid

from playwright.sync_api import expect

from tests.e2e.pages import AppShell, SignInPage, SignUpPage


def test_sign_up_reload_sign_out_and_return_to_the_protected_page(browser, app_server):
    context = browser.new_context(base_url=app_server.url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    email = f"flow-{uuid.uuid4().hex[:8]}@example.com"
    password = "another long passphrase 7"

    SignUpPage(page).open().sign_up(email=email, password=password, name="Grace")
    expect(page.get_by_role("heading", name="Good to see you.")).to_be_visible()
    expect(page.get_by_role("button", name="Account menu")).to_contain_text("Grace")
    cookie = next(c for c in context.cookies() if c["name"] == "carmenta_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
    assert page.evaluate("document.cookie").find("carmenta_session") == -1

    page.reload()
    expect(page.get_by_role("heading", name="Good to see you.")).to_be_visible()

    AppShell(page).sign_out()
    page.wait_for_url(re.compile(r"/sign-in"))
    SignInPage(page).expect_open()

    page.goto("/account")
    page.wait_for_url(re.compile(r"/sign-in\?next=%2Faccount"))
    expect(page.get_by_test_id("account-page")).to_have_count(0)
    SignInPage(page).sign_in(email=email, password=password)
    page.wait_for_url(re.compile(r"/account/?$"))
    expect(page.get_by_test_id("account-page")).to_contain_text(email)
    context.close()


def test_wrong_password_shows_a_message_that_reveals_nothing(anonymous_page, account):
    anonymous_page.goto("/sign-in")
    SignInPage(anonymous_page).expect_open().sign_in(email=account.email, password="wrong one!")
    error = anonymous_page.get_by_test_id("form-error")
    expect(error).to_have_text("That email and password do not match an account.")
    SignInPage(anonymous_page).sign_in(email="nobody@example.com", password="wrong one!")
    expect(error).to_have_text("That email and password do not match an account.")


def test_password_rules_update_as_you_type(anonymous_page):
    SignUpPage(anonymous_page).open()
    rules = anonymous_page.get_by_test_id("password-rules")
    expect(rules).to_contain_text("At least 10 characters (not met yet)")
    anonymous_page.get_by_label("Password").fill("a much longer phrase")
    expect(rules).to_contain_text("At least 10 characters (met)")
    anonymous_page.get_by_label("Password").fill("password123")
    expect(rules).to_contain_text("Not a commonly used password (not met yet)")


def test_signing_out_another_session_from_the_account_page(browser, app_server, account):
    # A second browser signs in; the first sees it listed and signs it out.
    other_context = browser.new_context(base_url=app_server.url)
    other = other_context.new_page()
    other.goto("/sign-in")
    SignInPage(other).expect_open().sign_in(email=account.email, password=account.password)
    expect(other.get_by_role("heading", name="Good to see you.")).to_be_visible()

    first_context = browser.new_context(
        base_url=app_server.url, storage_state=str(account.storage_state)
    )
    first = first_context.new_page()
    first.goto("/account")
    rows = first.get_by_test_id("session-row")
    expect(rows.first).to_be_visible()
    count_before = rows.count()
    assert count_before >= 2
    # Newest first: the other browser's session heads the list.
    first.get_by_role("button", name="Sign out this session").first.click()
    expect(rows).to_have_count(count_before - 1)

    # The revoked browser is sent to sign-in at its next page load.
    other.goto("/account")
    other.wait_for_url(re.compile(r"/sign-in"))
    other_context.close()
    first_context.close()
