"""The chat in Chromium: a reply streams in, Stop keeps what arrived, Regenerate replaces
it, a reload shows everything, and conversations are renamed and deleted from the
sidebar. The app's model is the local OpenAI-compatible stand-in (it echoes the message
a word at a time); the offline assistant answers from the knowledge base."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.knowledge_data import create_document

LONG_MESSAGE = " ".join(f"word{number}" for number in range(1, 121))


@pytest.fixture(autouse=True)
def _patient(page: Page) -> None:
    # A reply involves the model, the database and the embedding model at once.
    page.set_default_timeout(30_000)
    expect.set_options(timeout=15_000)


def _send(page: Page, text: str) -> None:
    box = page.get_by_test_id("composer-input")
    box.fill(text)
    box.press("Enter")


def _last_reply(page: Page):
    return page.get_by_test_id("assistant-message").last


def _new_conversation(page: Page, text: str) -> str:
    """Start a conversation from the home page with `text`; its URL once answered."""
    page.goto("/")
    _send(page, text)
    page.wait_for_url(re.compile(r".*/chat/[0-9a-f-]{36}$"))
    expect(_last_reply(page)).to_have_attribute("data-status", "complete", timeout=30_000)
    return page.url


def test_a_reply_streams_in_can_be_stopped_regenerated_and_survives_a_reload(page: Page):
    page.goto("/")
    _send(page, LONG_MESSAGE)
    page.wait_for_url(re.compile(r".*/chat/[0-9a-f-]{36}$"))
    conversation_url = page.url

    reply = _last_reply(page)
    expect(reply).to_have_attribute("data-status", "streaming")
    text = reply.get_by_test_id("assistant-text")
    expect(text).to_contain_text("Echo: word1", timeout=20_000)
    first_seen = text.inner_text()
    time.sleep(0.6)
    # Still streaming, and more has arrived: it comes in token by token.
    expect(reply).to_have_attribute("data-status", "streaming")
    assert len(text.inner_text()) > len(first_seen)

    page.get_by_test_id("stop").click()
    expect(reply).to_have_attribute("data-status", "stopped")
    expect(reply.get_by_test_id("reply-status")).to_have_text("Stopped")
    kept = text.inner_text()
    assert kept.startswith("Echo: word1") and "word120" not in kept

    page.get_by_test_id("regenerate").click()
    expect(_last_reply(page)).to_have_attribute("data-status", "complete", timeout=30_000)
    expect(_last_reply(page).get_by_test_id("assistant-text")).to_contain_text("word120")
    expect(page.get_by_test_id("assistant-message")).to_have_count(1)

    page.reload()
    expect(page.get_by_test_id("user-message")).to_have_count(1)
    expect(page.get_by_test_id("user-message")).to_contain_text("word120")
    expect(_last_reply(page)).to_have_attribute("data-status", "complete")
    expect(_last_reply(page).get_by_test_id("assistant-text")).to_contain_text("word120")

    # The same conversation opened in another tab.
    other = page.context.new_page()
    other.goto(conversation_url)
    expect(other.get_by_test_id("assistant-text")).to_contain_text("word120")
    other.close()


def test_a_replys_words_arrive_in_a_live_region_that_was_there_before_them(
    page: Page, model_server
):
    # Screen readers announce what is added to a live region they already know: one
    # created together with the first words would say nothing.
    _new_conversation(page, "A first question")
    model_server.state.first_byte_delay = 2.0
    try:
        _send(page, LONG_MESSAGE)
        expect(page.get_by_test_id("assistant-message")).to_have_count(2)
        reply = _last_reply(page)
        expect(reply).to_have_attribute("data-status", "streaming")
        text = reply.get_by_test_id("assistant-text")
        expect(text).to_have_attribute("aria-live", "polite")
        text.evaluate("box => { window.__replyBox = box; }")
        assert text.inner_text().strip() == ""  # the model's first byte is held back
        # Meanwhile a dot says the reply is being written; it keeps still for those who
        # ask for less motion.
        writing = reply.get_by_test_id("writing")
        expect(writing).to_be_visible()
        expect(writing).to_have_text("Writing")
        animation = "dot => getComputedStyle(dot).animationName"
        assert writing.evaluate(animation) == "carmenta-writing-pulse"
        page.emulate_media(reduced_motion="reduce")
        assert writing.evaluate(animation) == "none"
        page.emulate_media(reduced_motion="no-preference")
        expect(text).to_contain_text("Echo: word1", timeout=20_000)
        # Still the region that was there before them, still being written.
        assert page.evaluate(
            "() => window.__replyBox.isConnected"
            " && window.__replyBox.textContent.includes('Echo: word1')"
        )
        expect(reply).to_have_attribute("data-status", "streaming")
    finally:
        model_server.state.first_byte_delay = 0.0
    expect(_last_reply(page)).to_have_attribute("data-status", "complete", timeout=30_000)
    expect(_last_reply(page).get_by_test_id("assistant-text")).to_have_attribute("aria-live", "off")
    expect(page.get_by_test_id("writing")).to_have_count(0)


def test_markdown_renders_and_raw_html_and_script_links_stay_inert(page: Page):
    page.goto("/")
    _send(
        page,
        "**bold** <img src=x onerror=alert(1) data-testid=planted> "
        "[click me](javascript:alert(1)) <script>alert(2)</script>",
    )
    page.wait_for_url(re.compile(r".*/chat/"))
    reply = _last_reply(page)
    expect(reply).to_have_attribute("data-status", "complete", timeout=30_000)
    text = reply.get_by_test_id("assistant-text")
    expect(text.locator("strong")).to_have_text("bold")
    expect(text.locator("img")).to_have_count(0)
    expect(text.locator("script")).to_have_count(0)
    # The HTML is shown as text, not rendered.
    expect(text).to_contain_text("<img src=x")
    for href in text.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))"):
        assert not (href or "").lower().startswith("javascript:")


FORMATTED_REPLY = (
    "Here is the plan:\n\n"
    "- water the tomatoes\n- pick the beans\n\n"
    "| Bed | Crop |\n| --- | --- |\n| North | Tomatoes |\n| South | Beans |\n\n"
    "```python\ndef harvest(bed):\n    return [crop for crop in bed if crop.ripe]\n```\n\n"
    "See [the almanac](https://example.org/almanac)."
)


def test_code_tables_lists_and_links_render_and_shift_enter_adds_a_line(page: Page, model_server):
    from tests.model_servers import ScriptedReply

    page.goto("/")
    box = page.get_by_test_id("composer-input")
    box.fill("Plan the garden")
    box.press("Shift+Enter")
    box.press_sequentially("with a table")
    # Shift+Enter added a line and sent nothing.
    expect(box).to_have_value("Plan the garden\nwith a table")
    expect(page.get_by_test_id("user-message")).to_have_count(0)

    model_server.state.script(ScriptedReply(text_chunks=[FORMATTED_REPLY]))
    box.press("Enter")
    page.wait_for_url(re.compile(r".*/chat/"))
    reply = _last_reply(page)
    expect(reply).to_have_attribute("data-status", "complete", timeout=30_000)
    text = reply.get_by_test_id("assistant-text")

    expect(text.locator("li")).to_have_text(["water the tomatoes", "pick the beans"])
    expect(text.locator("table th")).to_have_text(["Bed", "Crop"])
    expect(text.locator("table td").first).to_have_text("North")
    code = text.locator("pre code")
    expect(code).to_contain_text("def harvest(bed):")
    # Highlighted: the keywords are marked up apart from the rest of the line.
    assert code.locator("span").count() > 3
    copy = text.get_by_role("button")
    expect(copy).to_have_count(1)  # the code block's copy button
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    copy.click()
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert copied.startswith("def harvest(bed):") and "crop.ripe" in copied
    link = text.get_by_role("link", name="the almanac")
    expect(link).to_have_attribute("href", "https://example.org/almanac")
    expect(link).to_have_attribute("target", "_blank")


# When the first words of the newest reply appeared, when the watched conversation
# became the sidebar's first, and when the reply ended (performance.now()).
_WATCH_SIDEBAR_ORDER = """(watched) => {
    const seen = (window.__order = { firstWords: null, movedUp: null, ended: null });
    const look = () => {
        const now = performance.now();
        const replies = document.querySelectorAll('[data-testid="assistant-message"]');
        const last = replies[replies.length - 1];
        const text = last && last.querySelector('[data-testid="assistant-text"]');
        if (seen.firstWords === null && replies.length >= 2 && text
            && text.textContent.includes("Echo:")) seen.firstWords = now;
        if (seen.ended === null && replies.length >= 2
            && last.getAttribute("data-status") === "complete") seen.ended = now;
        const top = document.querySelector('[data-testid="conversation-row"]');
        if (seen.movedUp === null && top && top.textContent.includes(watched)) {
            seen.movedUp = now;
        }
    };
    new MutationObserver(look).observe(document.body, {
        childList: true, subtree: true, characterData: true, attributes: true,
    });
}"""


def test_a_conversation_moves_up_the_sidebar_after_its_reply_starts_not_before(page: Page):
    # Reloading the sidebar takes the server and the page: it waits until the first
    # words are on screen, and does not wait for the reply to end.
    otters = _new_conversation(page, "An older question about otters")
    _new_conversation(page, "A newer question about badgers")
    expect(page.get_by_test_id("conversation-row").first).to_contain_text("badgers")

    page.goto(otters)
    expect(page.get_by_test_id("assistant-message")).to_have_count(1)
    expect(page.get_by_test_id("conversation-row").first).to_contain_text("badgers")
    page.evaluate(_WATCH_SIDEBAR_ORDER, "otters")
    _send(page, LONG_MESSAGE)
    expect(page.get_by_test_id("conversation-row").first).to_contain_text("otters")
    expect(_last_reply(page)).to_have_attribute("data-status", "complete", timeout=30_000)
    order = page.evaluate("() => window.__order")
    assert None not in order.values(), order
    assert order["firstWords"] < order["movedUp"] < order["ended"], order


def test_conversations_are_renamed_searched_and_deleted_from_the_sidebar(page: Page):
    page.goto("/")
    _send(page, "Plan a picnic by the river")
    page.wait_for_url(re.compile(r".*/chat/"))
    expect(_last_reply(page)).to_have_attribute("data-status", "complete", timeout=30_000)
    row = page.get_by_test_id("conversation-row").filter(has_text="Plan a picnic")
    expect(row).to_be_visible()

    row.get_by_test_id("conversation-actions").click()
    page.get_by_role("menuitem", name="Rename").click()
    page.get_by_test_id("rename-input").fill("Riverside picnic")
    page.get_by_test_id("rename-save").click()
    expect(page.get_by_test_id("conversation-title")).to_have_text("Riverside picnic")
    renamed = page.get_by_test_id("conversation-row").filter(has_text="Riverside picnic")
    expect(renamed).to_be_visible()

    page.get_by_test_id("conversation-search").fill("river")
    expect(
        page.get_by_test_id("conversation-row").filter(has_text="Riverside picnic")
    ).to_be_visible()
    page.get_by_test_id("conversation-search").fill("zebra unicorn")
    expect(page.get_by_test_id("conversations-empty")).to_contain_text("No conversation matches")
    page.get_by_test_id("conversation-search").fill("")

    renamed = page.get_by_test_id("conversation-row").filter(has_text="Riverside picnic")
    renamed.get_by_test_id("conversation-actions").click()
    page.get_by_role("menuitem", name="Delete…").click()
    page.get_by_test_id("confirm-delete-conversation").click()
    page.wait_for_url(re.compile(r".*/$"))
    expect(
        page.get_by_test_id("conversation-row").filter(has_text="Riverside picnic")
    ).to_have_count(0)


def _ask_offline(page: Page, question: str):
    """A new conversation with the offline assistant; its reply, once complete."""
    page.goto("/")
    page.get_by_test_id("model-picker").click()
    page.get_by_role("option", name="Offline assistant").click()
    _send(page, question)
    page.wait_for_url(re.compile(r".*/chat/"))
    reply = _last_reply(page)
    expect(reply).to_have_attribute("data-status", "complete", timeout=30_000)
    return reply


def test_the_offline_assistant_answers_from_the_knowledge_base(page: Page, app_server, account):
    create_document(
        app_server.database_url,
        account.email,
        title="Bicycle",
        content="My bicycle lock code is 4471. The bike is a green Brompton.",
    )
    reply = _ask_offline(page, "What is my bicycle lock code?")
    text = reply.get_by_test_id("assistant-text")
    expect(text).to_contain_text("Offline assistant")
    expect(text).to_contain_text("4471")
    expect(text.get_by_role("link", name="Bicycle")).to_have_attribute(
        "href", re.compile(r"/knowledge\?doc=")
    )
    expect(reply.get_by_test_id("context-used")).to_contain_text("document")


def test_at_phone_width_an_answer_and_what_it_used_stay_on_screen(
    phone_page: Page, app_server, account
):
    create_document(
        app_server.database_url,
        account.email,
        title="Garden notes",
        content="Tomatoes need full sun. Plant garlic in October.",
    )
    reply = _ask_offline(phone_page, "What do I know about gardens?")
    expect(reply.get_by_test_id("assistant-text")).to_contain_text("Plant garlic in October.")
    used = reply.get_by_test_id("context-used")
    expect(used).to_contain_text("1 document")
    box = used.bounding_box()
    width = phone_page.viewport_size["width"]
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, box
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= width


def test_files_attached_in_the_composer_go_with_the_message(page: Page, tmp_path):
    from tests import file_samples

    notes = tmp_path / "mooring notes.txt"
    notes.write_text("The sailing boat is moored at pier 7 in the north harbour.\n")
    photo = tmp_path / "harbour.png"
    photo.write_bytes(file_samples.png())
    page.goto("/")
    page.get_by_test_id("model-picker").click()
    page.get_by_role("option", name="Offline assistant").click()
    page.get_by_test_id("file-input").set_input_files([str(notes), str(photo)])
    pending = page.get_by_test_id("attachment-chip")
    expect(pending).to_have_count(2)
    expect(pending.filter(has_text="mooring notes.txt")).to_be_visible()

    _send(page, "Where is the sailing boat moored?")
    page.wait_for_url(re.compile(r".*/chat/"))
    reply = _last_reply(page)
    expect(reply).to_have_attribute("data-status", "complete", timeout=45_000)
    expect(reply.get_by_test_id("assistant-text")).to_contain_text("pier 7")
    expect(reply.get_by_test_id("assistant-text")).to_contain_text("mooring notes.txt")

    sent = page.get_by_test_id("user-message").last
    chips = sent.get_by_test_id("attachment-chip")
    expect(chips).to_have_count(2)
    expect(chips.filter(has_text="mooring notes.txt")).to_contain_text("bytes")
    # The image shows inline through a signed transformation URL.
    thumbnail = chips.filter(has_text="harbour.png").get_by_role("img")
    expect(thumbnail).to_have_attribute("src", re.compile(r"width="))
    assert thumbnail.evaluate("img => img.complete && img.naturalWidth > 0")


def test_research_runs_as_a_job_and_posts_its_report(page: Page, app_server, account):
    create_document(
        app_server.database_url,
        account.email,
        title="Beekeeping",
        content="The hives stand by the orchard wall. Honey is harvested in late August.",
    )
    page.goto("/")
    page.get_by_test_id("model-picker").click()
    page.get_by_role("option", name="Offline assistant").click()
    page.get_by_test_id("research-mode").click()
    _send(page, "When is the honey harvested from the hives?")
    page.wait_for_url(re.compile(r".*/chat/"))
    reply = _last_reply(page)
    expect(reply).to_have_attribute("data-status", "complete", timeout=60_000)
    text = reply.get_by_test_id("assistant-text")
    expect(text).to_contain_text("Research: When is the honey harvested")
    expect(text).to_contain_text("late August")
    expect(text.get_by_role("link", name="Beekeeping").first).to_be_visible()
    page.reload()
    expect(_last_reply(page).get_by_test_id("assistant-text")).to_contain_text("late August")


def test_a_long_paste_and_a_dropped_file_become_attachments(page: Page):
    page.goto("/")
    box = page.get_by_test_id("composer-input")
    expect(box).to_be_visible()
    long_text = "The quarterly figures. " * 300
    box.focus()
    box.evaluate(
        """(element, text) => {
            const data = new DataTransfer();
            data.setData("text/plain", text);
            element.dispatchEvent(new ClipboardEvent("paste", {
                clipboardData: data, bubbles: true, cancelable: true,
            }));
        }""",
        long_text,
    )
    chips = page.get_by_test_id("attachment-chip")
    expect(chips.filter(has_text="pasted text.txt")).to_be_visible()
    # The text went into the file, not into the box.
    expect(box).to_have_value("")

    page.evaluate(
        """() => {
            const data = new DataTransfer();
            data.items.add(new File(["Dropped notes about the harbour."], "dropped.txt",
                                    { type: "text/plain" }));
            const target = document.querySelector("[data-testid=thread]")
                || document.querySelector("main");
            target.dispatchEvent(new DragEvent("dragover", {
                dataTransfer: data, bubbles: true, cancelable: true }));
            target.dispatchEvent(new DragEvent("drop", {
                dataTransfer: data, bubbles: true, cancelable: true }));
        }"""
    )
    expect(chips.filter(has_text="dropped.txt")).to_be_visible()
    expect(chips).to_have_count(2)


# Counts, on every change of the page, the most user messages and Regenerate buttons
# ever present at once.
_WATCH_MOST_SHOWN = """() => {
    window.__mostShown = { messages: 0, regenerate: 0 };
    const count = () => {
        const most = window.__mostShown;
        const messages = document.querySelectorAll("[data-testid=user-message]").length;
        const regenerate = document.querySelectorAll("[data-testid=regenerate]").length;
        most.messages = Math.max(most.messages, messages);
        most.regenerate = Math.max(most.regenerate, regenerate);
    };
    count();
    new MutationObserver(count).observe(document.body, { childList: true, subtree: true });
}"""


def test_a_second_message_streams_after_the_thread_and_the_last_one_can_be_edited(
    page: Page, model_server
):
    # The first conversation's title comes slowly, so the page that waited for it reads
    # the thread again while the second reply streams.
    model_server.state.answer_delay = 1.5
    try:
        _new_conversation(page, "First question about apples")

        # The second exchange shows under the first, once, while its reply is written;
        # meanwhile the first reply's Regenerate and the Edit button are out of reach.
        page.evaluate(_WATCH_MOST_SHOWN)
        _send(page, LONG_MESSAGE)
        expect(page.get_by_test_id("user-message")).to_have_count(2)
        expect(page.get_by_test_id("user-message").last).to_contain_text("word120")
        expect(_last_reply(page)).to_have_attribute("data-status", "streaming")
        expect(page.get_by_test_id("regenerate")).to_be_hidden()
        expect(page.get_by_test_id("edit-message")).to_be_hidden()
        expect(_last_reply(page)).to_have_attribute("data-status", "complete", timeout=30_000)
    finally:
        model_server.state.answer_delay = 0.0
    assert page.evaluate("() => window.__mostShown") == {"messages": 2, "regenerate": 1}
    expect(page.get_by_test_id("assistant-message")).to_have_count(2)
    expect(page.get_by_test_id("regenerate")).to_be_visible()

    # Edit the last message and send it again: its reply is replaced by a new one.
    page.get_by_test_id("edit-message").click()
    editor = page.get_by_role("textbox", name="Edit your message")
    editor.fill("Second question, about pears instead")
    page.get_by_role("button", name="Send", exact=True).first.click()
    expect(_last_reply(page)).to_have_attribute("data-status", "complete", timeout=30_000)
    expect(_last_reply(page).get_by_test_id("assistant-text")).to_contain_text(
        "Echo: Second question, about pears instead"
    )
    expect(page.get_by_test_id("user-message")).to_have_count(2)
    expect(page.get_by_test_id("assistant-message")).to_have_count(2)
    page.reload()
    expect(page.get_by_test_id("user-message").last).to_contain_text("about pears instead")
    expect(page.get_by_test_id("user-message").last).not_to_contain_text("word120")


def test_a_page_whose_session_was_ended_elsewhere_stores_nothing(browser, app_server):
    import secrets
    import uuid

    import psycopg

    from tests.e2e.pages import SignInPage, SignUpPage

    context = browser.new_context(base_url=app_server.url)
    page = context.new_page()
    page.set_default_timeout(30_000)
    email = f"ended-{uuid.uuid4().hex[:10]}@example.com"
    password = secrets.token_urlsafe(16)
    SignUpPage(page).open().sign_up(email=email, password=password, name="Ended")
    page.wait_for_url(f"{app_server.url}/")
    _send(page, "Before the end")
    page.wait_for_url(re.compile(r".*/chat/[0-9a-f-]{36}$"))
    expect(_last_reply(page)).to_have_attribute("data-status", "complete", timeout=30_000)

    # Signed out everywhere from another device; this page still believes otherwise.
    with psycopg.connect(app_server.database_url, autocommit=True) as connection:
        connection.execute(
            "update auth_sessions set revoked_at = now()"
            " where user_id = (select id from users where email = %s)",
            (email,),
        )
    _send(page, "After the end")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        with psycopg.connect(app_server.database_url) as connection:
            stored = connection.execute(
                "select count(*) from messages m join users u on u.id = m.owner_id"
                " where u.email = %s and m.content = 'After the end'",
                (email,),
            ).fetchone()[0]
        assert stored == 0, "a message was stored for a session that had ended"
        time.sleep(0.2)
    with psycopg.connect(app_server.database_url) as connection:
        total = connection.execute(
            "select count(*) from messages m join users u on u.id = m.owner_id where u.email = %s",
            (email,),
        ).fetchone()[0]
    assert total == 2  # the first exchange only
    # The message showed as sent at once; refused, it went back to the box, where it
    # waits once the person has signed in again.
    conversation_url = page.url
    page.get_by_role("link", name="Sign in again").click()
    SignInPage(page).expect_open().sign_in(email=email, password=password)
    page.wait_for_url(conversation_url)
    expect(page.get_by_test_id("user-message")).to_have_count(1)
    expect(page.get_by_test_id("composer-input")).to_have_value("After the end")
    context.close()
