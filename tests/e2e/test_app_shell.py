"""What a person sees when they open Carmenta in a browser."""

from __future__ import annotations

import json
import re
import urllib.request
import uuid

from playwright.sync_api import expect

from tests.e2e.pages import SignUpPage


def test_home_shows_the_shell_with_an_empty_conversation_list(anonymous_page):
    # A new account: the shared one may have conversations from other tests.
    page = anonymous_page
    SignUpPage(page).open().sign_up(
        email=f"shell-{uuid.uuid4().hex[:10]}@example.com", password="a long enough passphrase 42"
    )
    page.wait_for_url(re.compile(r".*/$"))
    expect(page.get_by_role("heading", name="Good to see you.")).to_be_visible()
    expect(page.get_by_role("navigation", name="Conversations")).to_be_visible()
    expect(page.get_by_test_id("conversations-empty")).to_contain_text("No conversations yet.")
    expect(page.get_by_role("button", name="New conversation", exact=True)).to_be_visible()
    expect(page).to_have_title("Home · Carmenta")


def test_home_reports_the_database_connected(page):
    page.goto("/")
    status = page.get_by_test_id("service-status")
    expect(status).to_have_attribute("data-status", "ok")
    expect(status).to_contain_text("database is connected")


def test_theme_toggle_switches_between_light_and_dark(page):
    page.emulate_media(color_scheme="light")
    page.goto("/")
    expect(page.get_by_role("heading", name="Good to see you.")).to_be_visible()
    html = page.locator("html")
    dark = re.compile(r"\bdark\b")
    header = page.locator("header")

    def header_background() -> str:
        return header.evaluate("element => getComputedStyle(element).backgroundColor")

    expect(html).not_to_have_class(dark)
    light_background = header_background()
    page.get_by_role("button", name="Switch between light and dark theme").click()
    expect(html).to_have_class(dark)
    assert header_background() != light_background
    page.get_by_role("button", name="Switch between light and dark theme").click()
    expect(html).not_to_have_class(dark)
    assert header_background() == light_background


def test_keyboard_users_can_skip_to_the_content(page):
    page.goto("/")
    expect(page.get_by_role("heading", name="Good to see you.")).to_be_visible()
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    assert page.url.endswith("#main")


def test_phone_width_hides_the_sidebar_behind_a_menu(phone_page):
    phone_page.goto("/")
    expect(phone_page.get_by_role("heading", name="Good to see you.")).to_be_visible()
    expect(phone_page.get_by_role("button", name="New conversation", exact=True)).to_be_hidden()
    phone_page.get_by_role("button", name="Open menu").click()
    drawer = phone_page.get_by_test_id("mobile-sidebar")
    expect(drawer).to_be_visible()
    expect(drawer.get_by_role("button", name="New conversation", exact=True)).to_be_visible()
    drawer.get_by_role("button", name="Close menu").click()
    expect(drawer).to_be_hidden()
    # Nothing spills sideways at phone width.
    assert phone_page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_an_unknown_address_shows_a_helpful_page(page):
    page.goto("/no/such/page")
    expect(page.get_by_test_id("not-found")).to_contain_text("This page does not exist.")
    page.get_by_role("link", name="Back to home").click()
    expect(page.get_by_role("heading", name="Good to see you.")).to_be_visible()


def test_health_endpoint_of_the_served_app_reports_the_database(app_server):
    with urllib.request.urlopen(f"{app_server.url}/health", timeout=5) as response:
        body = json.loads(response.read())
        assert response.status == 200
    assert body["status"] == "ok"
    assert body["database"]["status"] == "ok"
