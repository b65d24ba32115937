"""The user's services as chat tools, end to end: accounts connected through the real
OAuth flow against the local provider stand-ins, then every tool run through
run_tool, asserting what the stand-in received and what the outcome says."""

from __future__ import annotations

import json
import logging
import uuid

import httpx
import pytest
from sqlalchemy import text

from carmenta import db
from carmenta.chat.tools import run_tool, tools_for_user
from carmenta.connections.providers.notion import NOTION_VERSION
from carmenta.settings import Settings, get_settings
from tests.integration import oauth_support
from tests.integration.oauth_support import (
    ADA,
    GRACE,
    connect,
    connection_rows,
    expire_token,
    location,
    query_of,
    sign_up,
    stored_credentials,
)
from tests.local_server import free_port
from tests.provider_api_servers import NOTION_LONG_PAGE_ID, NOTION_PAGE_ID, ApiState
from tests.provider_servers import Account, Consent, overrides_for

oauth_env = oauth_support.oauth_env
api = oauth_support.api
oidc_peer = oauth_support.oidc_peer
provider_peer = oauth_support.provider_peer

SLACK_TOOLS = {
    "slack_search_messages",
    "slack_list_channels",
    "slack_read_channel",
    "slack_post_message",
}


@pytest.fixture
def stand_in(oauth_env) -> ApiState:
    oauth_env.state.api = ApiState()
    return oauth_env.state.api


async def _connected(api, provider_id: str, user=None):
    user = user or await sign_up()
    response = await connect(api, user, provider_id)
    assert query_of(location(response)).get("connected") == provider_id, location(response)
    return user


async def _token(user, provider_id: str, account_id: str | None = None) -> str:
    rows = [
        row
        for row in await connection_rows(user.user_id)
        if row["provider"] == provider_id and account_id in (None, row["account_id"])
    ]
    return (await stored_credentials(rows[0]["id"]))["access_token"]


async def _run(session, user, name, arguments=None, *, settings: Settings | None = None, http=None):
    return await run_tool(
        session=session,
        settings=settings or get_settings(),
        owner_id=user.user_id,
        name=name,
        arguments=arguments or {},
        http=http,
    )


# -- what is offered ------------------------------------------------------------------


async def test_only_connected_providers_tools_are_offered_and_writes_are_flagged(
    api, stand_in, session
):
    user = await sign_up()
    assert await tools_for_user(session=session, owner_id=user.user_id) == []
    await _connected(api, "slack", user)
    await _connected(api, "github", user)
    tools = {
        tool.name: tool for tool in await tools_for_user(session=session, owner_id=user.user_id)
    }
    assert set(tools) == SLACK_TOOLS | {"github_list_issues", "github_search_issues"}
    assert {name for name, tool in tools.items() if tool.writes} == {"slack_post_message"}
    post = tools["slack_post_message"]
    assert post.describe_call({"channel": "#general", "text": "Ship it"}) == (
        'Post to #general: "Ship it"'
    )
    assert "account" not in post.parameters["properties"]

    await _connected(api, "google", user)
    names = {tool.name for tool in await tools_for_user(session=session, owner_id=user.user_id)}
    assert {"gmail_search", "gmail_read_message", "gmail_create_draft"} <= names
    assert {"calendar_list_events", "calendar_create_event"} <= names


async def test_a_connection_that_needs_reconnecting_offers_nothing_and_says_so(
    api, stand_in, session
):
    user = await _connected(api, "slack")
    async with db.session_scope() as writer:
        await writer.execute(
            text("update service_connections set status = 'needs_reauth' where owner_id = :o"),
            {"o": user.user_id},
        )
    assert await tools_for_user(session=session, owner_id=user.user_id) == []
    outcome = await _run(session, user, "slack_search_messages", {"query": "deploy"})
    assert not outcome.ok
    assert "Slack connection needs to be reconnected" in outcome.content
    assert stand_in.requests == []


async def test_a_google_grant_without_gmail_offers_only_calendar(api, stand_in, session):
    user = await _connected(api, "google")
    # Carmenta asks for every scope it uses; a grant kept from an older consent may hold fewer.
    async with db.session_scope() as writer:
        await writer.execute(
            text("update service_connections set scopes = :scopes where owner_id = :o"),
            {"o": user.user_id, "scopes": ["openid", "https://www.googleapis.com/auth/calendar"]},
        )
    names = {tool.name for tool in await tools_for_user(session=session, owner_id=user.user_id)}
    assert names == {"calendar_list_events", "calendar_create_event"}
    outcome = await _run(session, user, "gmail_search", {"query": "report"})
    assert not outcome.ok and "does not allow this" in outcome.content
    assert stand_in.requests == []


# -- Slack ----------------------------------------------------------------------------


async def test_slack_search_reads_matches_with_channel_author_and_permalink(api, stand_in, session):
    user = await _connected(api, "slack")
    outcome = await _run(session, user, "slack_search_messages", {"query": "deploy", "limit": 5})
    assert outcome.ok, outcome.content
    lines = outcome.content.splitlines()
    assert lines[0].startswith('Slack messages matching "deploy": 3 shown of 3')
    assert lines[1].startswith("1. #deploys · grace · 2025-03-03 10:00 UTC")
    assert "https://acme.slack.com/archives/C0DEPLOYS3/p" in lines[1]
    assert outcome.summary == 'Found 3 Slack messages for "deploy"'
    [request] = stand_in.of("slack")
    assert request["query"] == {"query": "deploy", "count": "5", "sort": "timestamp"}
    assert request["authorization"] == f"Bearer {await _token(user, 'slack')}"
    assert request["account"] == ADA.id


async def test_slack_reads_a_channel_by_name_following_list_cursors(api, stand_in, session):
    user = await _connected(api, "slack")
    outcome = await _run(session, user, "slack_read_channel", {"channel": "#general"})
    assert outcome.ok, outcome.content
    assert outcome.content.splitlines() == [
        "Latest 2 messages in #general, oldest first:",
        "2025-03-03 09:00 UTC ada: Morning all! Deploy at 10",
        "2025-03-03 09:30 UTC Grace: The deploy is done, ship it [2 replies]",
    ]
    paths = [r["path"].rsplit("/", 1)[-1] for r in stand_in.of("slack")]
    assert paths[0] == "conversations.list"
    history = next(r for r in stand_in.of("slack") if r["path"].endswith("conversations.history"))
    assert history["query"]["channel"] == "C0GENERAL1"
    # The stand-in pages two channels at a time: the private one needs a second page.
    outcome = await _run(session, user, "slack_read_channel", {"channel": "secret-plans"})
    assert outcome.ok and outcome.content == "#secret-plans has no messages."
    cursors = [r["query"].get("cursor") for r in stand_in.of("slack") if "list" in r["path"]]
    assert "2" in cursors


async def test_slack_lists_channels_public_by_default(api, stand_in, session):
    user = await _connected(api, "slack")
    outcome = await _run(session, user, "slack_list_channels")
    assert outcome.ok
    assert "#general (C0GENERAL1) [member, 42 members] — Company-wide announcements" in (
        outcome.content
    )
    assert "secret-plans" not in outcome.content and "old-stuff" not in outcome.content
    outcome = await _run(session, user, "slack_list_channels", {"include_private": True})
    assert "#secret-plans (G0SECRET04) [private, member, 3 members]" in outcome.content


async def test_slack_post_is_a_write_that_lands_in_the_channel(api, stand_in, session):
    user = await _connected(api, "slack")
    outcome = await _run(
        session, user, "slack_post_message", {"channel": "general", "text": "Ship it 🚀"}
    )
    assert outcome.ok, outcome.content
    assert outcome.summary == "Posted to #general"
    assert outcome.data["permalink"].startswith("https://acme.slack.com/archives/C0GENERAL1/p")
    posted = stand_in.slack_messages["C0GENERAL1"][-1]
    assert (posted["text"], posted["user"]) == ("Ship it 🚀", ADA.id)
    request = next(r for r in stand_in.of("slack") if r["path"].endswith("chat.postMessage"))
    assert request["headers"]["content-type"].startswith("application/json")
    assert json.loads(request["body"]) == {"channel": "C0GENERAL1", "text": "Ship it 🚀"}


async def test_slack_unknown_channel_is_named_and_nothing_is_posted(api, stand_in, session):
    user = await _connected(api, "slack")
    outcome = await _run(session, user, "slack_post_message", {"channel": "#nope", "text": "hi"})
    assert not outcome.ok
    assert outcome.content == "Slack says the channel #nope does not exist."
    assert not any(r["path"].endswith("chat.postMessage") for r in stand_in.requests)
    outcome = await _run(session, user, "slack_post_message", {"channel": "deploys", "text": "x"})
    assert outcome.content == "Slack says you are not a member of #deploys; join it first."


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("unauthorized", "Your Slack connection (ada (Acme)) needs to be reconnected"),
        ("not_found", "Slack says the channel #C0GENERAL1 does not exist."),
        ("rate_limited", "Slack rate limit reached, try again in 2 minutes."),
        ("server_error", "Slack had a problem on its side (HTTP 500); try again later."),
        ("forbidden", "Your Slack connection lacks a permission this needs (chat:write)"),
    ],
)
async def test_slack_failures_are_told_in_words(api, stand_in, session, kind, expected):
    user = await _connected(api, "slack")
    stand_in.fail_next["slack"] = kind
    outcome = await _run(session, user, "slack_read_channel", {"channel": "C0GENERAL1"})
    assert not outcome.ok
    assert outcome.content.startswith(expected), outcome.content
    assert outcome.summary.startswith(expected)


async def test_an_unreachable_provider_is_said_to_be_unreachable(
    api, provider_peer, stand_in, session
):
    user = await _connected(api, "slack")
    overrides = overrides_for(provider_peer.url)
    # A port nothing listens on: the connection is refused.
    overrides["slack"]["api_base"] = f"http://127.0.0.1:{free_port()}/slack/api"
    settings = Settings(oauth_endpoint_overrides=json.dumps(overrides))
    outcome = await _run(session, user, "slack_list_channels", settings=settings)
    assert not outcome.ok
    assert outcome.content == "Couldn't reach Slack; try again in a moment."
    assert stand_in.requests == []


# -- Gmail ----------------------------------------------------------------------------


async def test_gmail_search_lists_senders_subjects_and_ids(api, stand_in, session):
    user = await _connected(api, "google")
    outcome = await _run(session, user, "gmail_search", {"query": "from:grace report"})
    assert outcome.ok, outcome.content
    assert "[id 18c2f1a9b3e4d5f6] 2025-03-03 09:15 UTC · from Grace Hopper <grace@example.com>" in (
        outcome.content
    )
    assert "Quarterly report — The report is attached." in outcome.content
    listing, metadata = stand_in.of("google")
    assert listing["query"] == {"q": "from:grace report", "maxResults": "10"}
    assert metadata["path"].endswith("/messages/18c2f1a9b3e4d5f6")
    assert ("metadataHeaders", "Subject") in metadata["query_list"]
    assert metadata["query"]["format"] == "metadata"
    assert metadata["authorization"] == f"Bearer {await _token(user, 'google')}"

    none = await _run(session, user, "gmail_search", {"query": "zebra"})
    assert none.ok and none.content.startswith('Gmail messages matching "zebra": 0 shown')


async def test_gmail_reads_the_plain_text_part_and_falls_back_to_html(api, stand_in, session):
    user = await _connected(api, "google")
    outcome = await _run(session, user, "gmail_read_message", {"message_id": "18c2f1a9b3e4d5f6"})
    assert outcome.ok, outcome.content
    assert "Subject: Quarterly report" in outcome.content
    assert "Attachments: report-q1.pdf" in outcome.content
    assert "Revenue is up 12 %.\r\nCafé at 3?" in outcome.content
    assert "<p>" not in outcome.content
    assert stand_in.of("google")[0]["query"] == {"format": "full"}

    html_only = await _run(session, user, "gmail_read_message", {"message_id": "18c2f1a9b3e4d5f7"})
    assert html_only.content.endswith("Sale & more\nEnds Friday")
    assert "alert" not in html_only.content

    latin1 = await _run(session, user, "gmail_read_message", {"message_id": "18c2f1a9b3e4d5f8"})
    assert "Voilà la facture, réglée à l'échéance." in latin1.content

    missing = await _run(session, user, "gmail_read_message", {"message_id": "doesnotexist"})
    assert not missing.ok
    assert missing.content == "Gmail says there is no message with id doesnotexist."


async def test_gmail_draft_sends_an_rfc_2822_message(api, stand_in, session):
    user = await _connected(api, "google")
    arguments = {
        "to": "Grace Hopper <grace@example.com>, bob@example.org",
        "subject": "Réunion lundi",
        "body": "Bonjour,\nà lundi.\n",
        "cc": "carol@example.net",
    }
    outcome = await _run(session, user, "gmail_create_draft", arguments)
    assert outcome.ok, outcome.content
    assert outcome.data == {"draft_id": "r-1", "message_id": "m-1"}
    assert "not sent" in outcome.content
    [draft] = stand_in.drafts
    message = draft["message"]
    assert message["To"] == "Grace Hopper <grace@example.com>, bob@example.org"
    assert message["Cc"] == "carol@example.net"
    assert message["Subject"] == "Réunion lundi"
    # RFC 2822 lines end in CRLF, in the body too.
    assert message.get_content() == "Bonjour,\r\nà lundi.\r\n"
    assert b"\r\n" in draft["raw"] and b"R\xc3\xa9union" not in draft["raw"]

    bad = await _run(session, user, "gmail_create_draft", {**arguments, "to": "grace at home"})
    assert not bad.ok and bad.content == "'grace at home' in to is not an email address."
    assert len(stand_in.drafts) == 1


# -- Calendar -------------------------------------------------------------------------


async def test_calendar_lists_events_in_the_calendars_time_zone(api, stand_in, session):
    user = await _connected(api, "google")
    outcome = await _run(
        session, user, "calendar_list_events", {"time_min": "2025-03-04", "time_max": "2025-03-07"}
    )
    assert outcome.ok, outcome.content
    lines = outcome.content.splitlines()
    assert lines[0].startswith(
        "Events from 2025-03-04T00:00:00+01:00 to 2025-03-07T00:00:00+01:00: 3"
    )
    assert lines[1].startswith(
        "1. 2025-03-04 09:30 +0100 → 2025-03-04 09:45 +0100 · Standup · 2 attendees"
    )
    assert "Dentist · at 12 Rue de Rivoli" in lines[2]
    assert lines[3].startswith("3. 2025-03-06 (all day) · Offsite")
    zone, listing = stand_in.of("google")
    assert zone["path"].endswith("/calendar/v3/calendars/primary")
    assert listing["query"]["singleEvents"] == "true"
    assert listing["query"]["orderBy"] == "startTime"
    assert listing["query"]["timeMin"] == "2025-03-04T00:00:00+01:00"


async def test_calendar_creates_timed_and_all_day_events(api, stand_in, session):
    user = await _connected(api, "google")
    outcome = await _run(
        session,
        user,
        "calendar_create_event",
        {"summary": "Lunch with Grace", "start": "2025-03-10T12:30", "attendees": ["g@x.org"]},
    )
    assert outcome.ok, outcome.content
    created = json.loads(stand_in.of("google")[-1]["body"])
    assert created["start"] == {"dateTime": "2025-03-10T12:30:00", "timeZone": "Europe/Paris"}
    assert created["end"] == {"dateTime": "2025-03-10T13:30:00", "timeZone": "Europe/Paris"}
    assert created["attendees"] == [{"email": "g@x.org"}]
    assert outcome.data["link"].startswith("https://www.google.com/calendar/event?eid=")

    offset = await _run(
        session,
        user,
        "calendar_create_event",
        {"summary": "Call", "start": "2025-03-11T09:00:00Z", "end": "2025-03-11T09:30:00Z"},
    )
    assert offset.ok
    assert json.loads(stand_in.of("google")[-1]["body"])["start"] == {
        "dateTime": "2025-03-11T09:00:00+00:00"
    }
    all_day = await _run(
        session, user, "calendar_create_event", {"summary": "Holiday", "start": "2025-03-12"}
    )
    assert all_day.ok
    body = json.loads(stand_in.of("google")[-1]["body"])
    assert (body["start"], body["end"]) == ({"date": "2025-03-12"}, {"date": "2025-03-13"})

    count = len(stand_in.requests)
    backwards = await _run(
        session,
        user,
        "calendar_create_event",
        {"summary": "x", "start": "2025-03-12T10:00Z", "end": "2025-03-12T09:00Z"},
    )
    assert not backwards.ok and backwards.content == "The event must end after it starts."
    assert len(stand_in.requests) == count


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("unauthorized", "Your Google connection (ada@gmail.example) needs to be reconnected"),
        ("rate_limited", "Google rate limit reached, try again in 1 minute."),
        ("server_error", "Google had a problem on its side (HTTP 500)"),
        ("forbidden", "Your Google connection lacks permission for this"),
    ],
)
async def test_google_failures_are_told_in_words(api, stand_in, session, kind, expected):
    user = await _connected(api, "google")
    stand_in.fail_next["google"] = kind
    outcome = await _run(session, user, "calendar_list_events", {"time_min": "2025-03-04T00:00Z"})
    assert not outcome.ok and outcome.content.startswith(expected), outcome.content


# -- Notion ---------------------------------------------------------------------------


async def test_notion_search_and_read_a_page_as_text(api, stand_in, session):
    user = await _connected(api, "notion")
    found = await _run(session, user, "notion_search", {"query": "launch"})
    assert found.ok, found.content
    assert (
        f"[page] Launch plan · id {NOTION_PAGE_ID} · edited 2025-03-01 10:00 UTC" in found.content
    )
    search = stand_in.of("notion")[0]
    assert search["headers"]["notion-version"] == NOTION_VERSION
    assert json.loads(search["body"])["query"] == "launch"

    link = f"https://www.notion.so/Launch-plan-{NOTION_PAGE_ID.replace('-', '')}"
    page = await _run(session, user, "notion_read_page", {"page": link})
    assert page.ok, page.content
    assert page.content.splitlines()[0] == "Notion page: Launch plan"
    body = page.content.split("\n\n", 1)[1]
    assert body.splitlines() == [
        "# Goals",
        "Ship the beta by April.",
        "- Invite 50 testers",
        "[x] Write the announcement",
        "[ ] Record the demo",
        "```shell",
        "make release",
        "```",
        "---",
        "▸ Risks (more inside)",
    ]
    assert all(r["headers"]["notion-version"] == NOTION_VERSION for r in stand_in.of("notion"))


async def test_notion_reads_long_pages_page_by_page_within_the_budget(api, stand_in, session):
    user = await _connected(api, "notion")
    outcome = await _run(session, user, "notion_read_page", {"page": NOTION_LONG_PAGE_ID})
    assert outcome.ok and outcome.data["complete"] is True
    assert "Meeting note number 249" in outcome.content
    children = [r for r in stand_in.of("notion") if r["path"].endswith("/children")]
    assert [r["query"].get("start_cursor") for r in children] == [None, "100", "200"]

    stand_in.requests.clear()
    small = Settings(chat_tool_result_chars=1000)
    outcome = await _run(
        session, user, "notion_read_page", {"page": NOTION_LONG_PAGE_ID}, settings=small
    )
    assert outcome.ok and len(outcome.content) <= 1000
    assert "more characters not shown" in outcome.content
    assert len([r for r in stand_in.of("notion") if r["path"].endswith("/children")]) == 1


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("unauthorized", "Your Notion connection"),
        ("not_found", f"Notion says the page {NOTION_PAGE_ID} does not exist"),
        ("rate_limited", "Notion rate limit reached, try again in 4 minutes."),
        ("server_error", "Notion had a problem on its side (HTTP 500)"),
        ("forbidden", "Notion says Carmenta may not see that"),
    ],
)
async def test_notion_failures_are_told_in_words(api, stand_in, session, kind, expected):
    user = await _connected(api, "notion")
    stand_in.fail_next["notion"] = kind
    outcome = await _run(session, user, "notion_read_page", {"page": NOTION_PAGE_ID})
    assert not outcome.ok and outcome.content.startswith(expected), outcome.content


# -- GitHub ---------------------------------------------------------------------------


async def test_github_lists_issues_and_marks_pull_requests(api, stand_in, session):
    user = await _connected(api, "github")
    outcome = await _run(session, user, "github_list_issues", {"repository": "octo-org/rocket"})
    assert outcome.ok, outcome.content
    lines = outcome.content.splitlines()
    assert (
        lines[0]
        == "octo-org/rocket: 2 issues and pull requests (open), most recently updated first."
    )
    assert lines[1].startswith(
        "1. #9 [PR, open] Add telemetry · by octo-grace · updated 2025-03-09"
    )
    assert lines[2].startswith("2. #7 [issue, open] Launch fails on cold start")
    assert "labels: bug, p1" in lines[2]
    [request] = stand_in.of("github")
    assert request["headers"]["user-agent"] == "Carmenta"
    assert request["headers"]["accept"] == "application/vnd.github+json"
    assert request["headers"]["x-github-api-version"] == "2022-11-28"
    assert request["query"]["state"] == "open"

    closed_prs = await _run(
        session,
        user,
        "github_list_issues",
        {"repository": "octo-org/rocket", "state": "closed", "kind": "pull_requests"},
    )
    assert "#11 [PR, closed] Docs: fuel table" in closed_prs.content
    assert "Old crash" not in closed_prs.content


async def test_github_search_names_the_repository(api, stand_in, session):
    user = await _connected(api, "github")
    outcome = await _run(
        session, user, "github_search_issues", {"query": "repo:octo-org/rocket is:pr"}
    )
    assert outcome.ok
    assert "1. octo-org/rocket #9 [PR, open] Add telemetry" in outcome.content
    assert outcome.summary == 'Found 2 GitHub results for "repo:octo-org/rocket is:pr"'


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("unauthorized", "Your GitHub connection (octo-ada) needs to be reconnected"),
        ("not_found", "GitHub says the repository octo-org/rocket does not exist"),
        ("rate_limited", "GitHub rate limit reached, try again in 10 minutes."),
        ("server_error", "GitHub had a problem on its side (HTTP 500)"),
        ("forbidden", "GitHub refused: your account may not do this"),
    ],
)
async def test_github_failures_are_told_in_words(api, stand_in, session, kind, expected):
    user = await _connected(api, "github")
    stand_in.fail_next["github"] = kind
    outcome = await _run(session, user, "github_list_issues", {"repository": "octo-org/rocket"})
    assert not outcome.ok and outcome.content.startswith(expected), outcome.content


async def test_a_provider_that_answers_too_late_is_said_to_be_slow(api, stand_in, session):
    user = await _connected(api, "github")
    stand_in.fail_next["github"] = "slow"
    async with httpx.AsyncClient(timeout=0.5) as impatient:
        outcome = await _run(
            session, user, "github_search_issues", {"query": "telemetry"}, http=impatient
        )
    assert not outcome.ok
    assert outcome.content == "GitHub took too long to answer; try again in a moment."


async def test_an_expiring_token_is_refreshed_before_the_call(api, oauth_env, stand_in, session):
    user = await _connected(api, "github")
    [row] = await connection_rows(user.user_id)
    first = await _token(user, "github")
    await expire_token(row["id"])
    outcome = await _run(session, user, "github_search_issues", {"query": "telemetry"})
    assert outcome.ok, outcome.content
    refreshed = await _token(user, "github")
    assert refreshed != first
    assert stand_in.of("github")[0]["authorization"] == f"Bearer {refreshed}"
    assert [r["grant_type"] for r in oauth_env.state.token_requests][-1] == "refresh_token"


# -- arguments, names, users, accounts, secrets ---------------------------------------


async def test_bad_arguments_and_unknown_tools_never_reach_the_provider(api, stand_in, session):
    user = await _connected(api, "slack")
    missing = await _run(session, user, "slack_post_message", {"text": "hi"})
    assert not missing.ok
    assert missing.content.startswith("Missing required argument 'channel'")
    too_many = await _run(session, user, "slack_search_messages", {"query": "x", "limit": 500})
    assert too_many.content == "Argument 'limit' must be between 1 and 50; got 500."
    unknown = await _run(session, user, "slack_launch_rocket", {})
    assert unknown.content == "There is no tool called 'slack_launch_rocket'."
    assert stand_in.requests == []


async def test_a_user_never_uses_another_users_connection(api, oauth_env, stand_in, session):
    ada = await _connected(api, "slack")
    bob = await sign_up()
    assert await tools_for_user(session=session, owner_id=bob.user_id) == []
    outcome = await _run(session, bob, "slack_search_messages", {"query": "deploy"})
    assert not outcome.ok
    assert outcome.content == (
        "You haven't connected Slack; connect it on the Connections page first."
    )
    assert stand_in.requests == []

    oauth_env.state.consent["slack"] = Consent(account=GRACE)
    await _connected(api, "slack", bob)
    assert (await _run(session, bob, "slack_search_messages", {"query": "deploy"})).ok
    assert (await _run(session, ada, "slack_search_messages", {"query": "deploy"})).ok
    assert [r["account"] for r in stand_in.of("slack")] == [GRACE.id, ADA.id]
    stranger = uuid.uuid4()
    outcome = await _run(session, type(ada)(user_id=stranger, token=""), "slack_list_channels")
    assert not outcome.ok and "haven't connected Slack" in outcome.content


async def test_several_accounts_of_one_provider_are_chosen_by_label(
    api, oauth_env, stand_in, session
):
    user = await _connected(api, "slack")
    oauth_env.state.consent["slack"] = Consent(
        account=Account(
            id="U0ADA99", name="ada", email="ada@beta.example", team_id="T0BETA", team_name="Beta"
        )
    )
    await _connected(api, "slack", user)
    tools = {t.name: t for t in await tools_for_user(session=session, owner_id=user.user_id)}
    account = tools["slack_search_messages"].parameters["properties"]["account"]
    assert account["enum"] == ["ada (Acme)", "ada (Beta)"]
    assert "default: ada (Acme)" in account["description"]

    default = await _run(session, user, "slack_search_messages", {"query": "deploy"})
    chosen = await _run(
        session, user, "slack_search_messages", {"query": "deploy", "account": "ada (Beta)"}
    )
    assert default.ok and chosen.ok
    assert chosen.summary.endswith("(ada (Beta))")
    assert [r["account"] for r in stand_in.of("slack")] == [ADA.id, "U0ADA99"]
    wrong = await _run(
        session, user, "slack_search_messages", {"query": "deploy", "account": "ada (Gamma)"}
    )
    assert not wrong.ok
    assert wrong.content.startswith("Argument 'account' must be one of: ada (Acme), ada (Beta)")


async def test_tokens_never_appear_in_outcomes_or_logs(api, stand_in, session, caplog):
    caplog.set_level(logging.DEBUG)
    user = await _connected(api, "slack")
    await _connected(api, "github", user)
    await _connected(api, "notion", user)
    secrets_held = [await _token(user, p) for p in ("slack", "github", "notion")]
    outcomes = [
        await _run(session, user, "slack_search_messages", {"query": "deploy"}),
        await _run(session, user, "github_list_issues", {"repository": "octo-org/rocket"}),
        await _run(session, user, "notion_search", {"query": ""}),
    ]
    for provider in ("slack", "github", "notion"):
        stand_in.fail_next[provider] = "unauthorized"
    outcomes += [
        await _run(session, user, "slack_list_channels"),
        await _run(session, user, "github_search_issues", {"query": "x"}),
        await _run(session, user, "notion_read_page", {"page": NOTION_PAGE_ID}),
    ]
    assert [o.ok for o in outcomes] == [True, True, True, False, False, False]
    for outcome in outcomes:
        shown = f"{outcome.content}\n{outcome.summary}\n{json.dumps(outcome.data, default=str)}"
        for secret in secrets_held:
            assert secret not in shown
    assert "chat tool slack_search_messages" in caplog.text
    for secret in secrets_held:
        assert secret not in caplog.text
