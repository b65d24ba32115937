"""Chat tools without I/O: argument checks, Gmail bodies and drafts, truncation, times."""

from __future__ import annotations

import base64
import email
from datetime import UTC, date, datetime
from email.policy import default as default_policy

import httpx
import pytest

from carmenta.chat.tools import ALL_TOOLS, find_tool
from carmenta.chat.tools.arguments import ArgumentError, validate_arguments
from carmenta.chat.tools.base import (
    ToolFailure,
    numbered,
    rate_limit_message,
    retry_after_seconds,
    truncate,
)
from carmenta.chat.tools.gmail import (
    build_draft,
    decode_base64url,
    encode_base64url,
    html_to_text,
    message_text,
)
from carmenta.chat.tools.google_calendar import parse_when
from carmenta.chat.tools.notion import block_text, page_id_from

SCHEMA = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "minLength": 1, "maxLength": 20, "description": "what"},
        "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 10},
        "state": {"type": "string", "enum": ["open", "closed"], "default": "open"},
        "private": {"type": "boolean", "default": False},
        "emails": {"type": "array", "maxItems": 2, "items": {"type": "string", "pattern": "@"}},
        "repo": {"type": "string", "pattern": "^[a-z]+/[a-z]+$", "examples": ["a/b"]},
    },
    "required": ["query"],
    "additionalProperties": False,
}


# -- arguments ------------------------------------------------------------------------


def test_valid_arguments_are_trimmed_and_completed_with_defaults():
    assert validate_arguments(SCHEMA, {"query": "  deploy ", "limit": 5.0, "repo": None}) == {
        "query": "deploy",
        "limit": 5,
        "state": "open",
        "private": False,
    }


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "Missing required argument 'query' (what)."),
        ({"query": "   "}, "Argument 'query' must not be empty (what)."),
        ({"query": 12}, "Argument 'query' must be text; got 12."),
        ({"query": "x" * 21}, "Argument 'query' is too long: at most 20 characters, got 21."),
        ({"query": "x", "limit": 0}, "Argument 'limit' must be between 1 and 50; got 0."),
        ({"query": "x", "limit": "5"}, "Argument 'limit' must be a whole number; got '5'."),
        ({"query": "x", "limit": True}, "Argument 'limit' must be a whole number; got True."),
        ({"query": "x", "limit": 2.5}, "Argument 'limit' must be a whole number; got 2.5."),
        (
            {"query": "x", "state": "pending"},
            "Argument 'state' must be one of: open, closed; got 'pending'.",
        ),
        ({"query": "x", "private": "yes"}, "Argument 'private' must be true or false; got 'yes'."),
        ({"query": "x", "emails": "a@b"}, "Argument 'emails' must be a list; got 'a@b'."),
        ({"query": "x", "emails": ["a@b", "c@d", "e@f"]}, "takes at most 2 items; got 3"),
        ({"query": "x", "emails": ["a@b", "nope"]}, "Argument 'emails[1]' is not in the expected"),
        (
            {"query": "x", "repo": "nope"},
            "Argument 'repo' is not in the expected form, for example 'a/b'; got 'nope'.",
        ),
        ({"query": "x", "colour": "red"}, "Unknown argument 'colour'; this tool takes: query,"),
        ("query=x", "The arguments must be a JSON object of named values."),
    ],
)
def test_invalid_arguments_say_which_and_why(arguments, message):
    with pytest.raises(ArgumentError) as caught:
        validate_arguments(SCHEMA, arguments)
    assert message in str(caught.value)


def test_every_declared_schema_is_one_the_checker_understands():
    for tool in ALL_TOOLS:
        assert tool.parameters["type"] == "object"
        assert tool.parameters["additionalProperties"] is False
        required = {name: "x" for name in tool.parameters["required"]}
        with pytest.raises(ArgumentError):
            validate_arguments(tool.parameters, {**required, "unexpected": 1})
        for name, schema in tool.parameters["properties"].items():
            assert schema["type"] in ("string", "integer", "boolean", "array"), name


def test_only_posting_drafting_and_creating_are_writes():
    assert {tool.name for tool in ALL_TOOLS if tool.writes} == {
        "slack_post_message",
        "gmail_create_draft",
        "calendar_create_event",
    }
    assert len({tool.name for tool in ALL_TOOLS}) == len(ALL_TOOLS)


def test_describe_call_is_one_line_even_for_odd_arguments():
    draft = find_tool("gmail_create_draft")
    assert draft.describe_call({"to": "grace@example.com", "subject": "Hi\nthere"}) == (
        'Draft an email to grace@example.com: "Hi there"'
    )
    assert find_tool("slack_post_message").describe_call("not a mapping") == 'Post to #: ""'
    long = find_tool("slack_post_message").describe_call({"channel": "g", "text": "y" * 500})
    assert len(long) <= 200 and long.endswith('…"')


# -- Gmail ----------------------------------------------------------------------------


def test_base64url_bodies_decode_with_or_without_padding():
    body = "Grüße, à bientôt? ~~>".encode()
    encoded = base64.urlsafe_b64encode(body).decode()
    assert "-" in encoded or "_" in encoded  # the URL-safe alphabet is exercised
    assert decode_base64url(encoded) == body
    assert decode_base64url(encoded.rstrip("=")) == body
    assert decode_base64url(encoded[:10] + "\n" + encoded[10:]) == body
    with pytest.raises(ValueError):
        decode_base64url("a")


def _part(mime, data: bytes | None = None, charset="utf-8", filename="", parts=None):
    part = {
        "mimeType": mime,
        "filename": filename,
        "headers": [{"name": "Content-Type", "value": f"{mime}; charset={charset}"}],
        "body": {"data": encode_base64url(data).rstrip("=")} if data is not None else {},
    }
    if parts:
        part["parts"] = parts
    return part


def test_message_text_prefers_plain_text_in_nested_parts_and_lists_attachments():
    payload = _part(
        "multipart/mixed",
        parts=[
            _part(
                "multipart/alternative",
                parts=[
                    _part("text/plain", "Prix : 10 €".encode("iso-8859-15"), "iso-8859-15"),
                    _part("text/html", b"<b>ignored</b>"),
                ],
            ),
            _part("application/pdf", b"%PDF", filename="devis.pdf"),
        ],
    )
    assert message_text(payload) == ("Prix : 10 €", ["devis.pdf"])


def test_message_text_falls_back_to_html_without_markup_or_scripts():
    payload = _part(
        "text/html",
        b"<style>.x{}</style><p>Hello&nbsp;<i>you</i></p><script>x()</script><br>Bye",
        charset="unknown-charset",
    )
    assert message_text(payload) == ("Hello you\n\nBye", [])
    assert html_to_text("<div>a</div><div>b</div>") == "a\nb"


def test_drafts_are_rfc_2822_with_crlf_and_encoded_headers():
    raw = build_draft(
        to="Zoë Martin <zoe@example.com>, bob@example.org",
        subject="Café demain ?",
        body="Ligne un\nLigne deux — fin\n",
        cc="carol@example.net",
    )
    assert raw.isascii()
    head, _, _ = raw.partition(b"\r\n\r\n")
    assert b"\n" not in head.replace(b"\r\n", b"")
    assert b"Subject: =?utf-8?" in head
    assert b"Content-Transfer-Encoding: quoted-printable" in head
    parsed = email.message_from_bytes(raw, policy=default_policy)
    assert parsed["Subject"] == "Café demain ?"
    assert [a.addr_spec for a in parsed["To"].addresses] == ["zoe@example.com", "bob@example.org"]
    assert parsed["To"].addresses[0].display_name == "Zoë Martin"
    assert parsed["Cc"] == "carol@example.net"
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content().replace("\r\n", "\n") == "Ligne un\nLigne deux — fin\n"
    assert decode_base64url(encode_base64url(raw)) == raw


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"to": "not-an-address"}, "'not-an-address' in to is not an email address."),
        ({"to": "a@b.org, nobody"}, "'nobody' in to is not an email address."),
        ({"to": "a@b.org\nBcc: evil@x.org"}, "The to addresses must be on one line."),
        ({"subject": "Hi\r\nBcc: evil@x.org"}, "The subject must be one line."),
        ({"cc": "cc@nowhere"}, "'cc@nowhere' in cc is not an email address."),
    ],
)
def test_drafts_refuse_bad_addresses_and_header_injection(arguments, message):
    with pytest.raises(ToolFailure) as caught:
        build_draft(**{"to": "a@b.org", "subject": "s", "body": "b", **arguments})
    assert caught.value.message == message


# -- text and times -------------------------------------------------------------------


def test_truncation_keeps_whole_lines_and_says_how_much_is_left_out():
    text = "\n".join(f"line {index:03d} with some words" for index in range(200))
    cut = truncate(text, 500)
    assert len(cut) <= 500
    assert cut.splitlines()[-2].startswith("line ") and cut.splitlines()[-2].endswith("words")
    assert cut.endswith("more characters not shown]")
    assert truncate("short", 500) == "short"
    assert len(truncate("x" * 10_000, 600)) <= 600


def test_numbered_lists_show_whole_items_and_count_the_rest():
    listing = numbered("Header", [f"item {index} " + "x" * 40 for index in range(100)], 700)
    assert len(listing) <= 700
    assert listing.startswith("Header\n1. item 0 ")
    assert listing.splitlines()[-1].endswith("more not shown]")
    shown = len(listing.splitlines()) - 2
    assert listing.splitlines()[-1] == f"[{100 - shown} more not shown]"


def test_retry_after_reads_seconds_and_http_dates():
    now = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)

    def response(value):
        return httpx.Response(429, headers={"Retry-After": value} if value else {})

    assert retry_after_seconds(response("120")) == 120
    assert retry_after_seconds(response("Tue, 04 Mar 2025 12:05:00 GMT"), now=now) == 300
    assert retry_after_seconds(response("soon")) is None
    assert retry_after_seconds(response(None)) is None
    assert rate_limit_message("Slack", 30) == "Slack rate limit reached, try again in 1 minute."
    assert rate_limit_message("GitHub", 601) == (
        "GitHub rate limit reached, try again in 11 minutes."
    )
    assert "a few minutes" in rate_limit_message("Notion", None)


def test_calendar_times_are_dates_naive_times_or_offsets():
    assert parse_when("2025-03-04") == date(2025, 3, 4)
    assert parse_when("2025-03-04T15:00") == datetime(2025, 3, 4, 15, 0)
    assert parse_when("2025-03-04 15:00").tzinfo is None
    assert parse_when("2025-03-04T15:00:00Z").utcoffset().total_seconds() == 0
    assert parse_when("2025-03-04T15:00:00+01:00").utcoffset().total_seconds() == 3600
    with pytest.raises(ValueError):
        parse_when("2025-13-04")


def test_notion_page_ids_come_from_ids_and_links():
    expected = "1a2b3c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d"
    assert page_id_from(expected) == expected
    assert page_id_from(expected.replace("-", "").upper()) == expected
    link = "https://www.notion.so/acme/Launch-plan-1a2b3c4d5e6f4a8b9c0d1e2f3a4b5c6d?pvs=4"
    assert page_id_from(link) == expected
    with pytest.raises(ToolFailure):
        page_id_from("https://www.notion.so/acme/Launch-plan")


def test_notion_blocks_become_plain_text_lines():
    def block(kind, text="", **body):
        rich = [{"plain_text": text}] if text else []
        return {"type": kind, kind: {"rich_text": rich, **body}, "has_children": False}

    assert block_text(block("heading_2", "Plan")) == "## Plan"
    assert block_text(block("numbered_list_item", "One")) == "1. One"
    assert block_text(block("to_do", "Done", checked=True)) == "[x] Done"
    assert block_text(block("quote", "Said")) == "> Said"
    assert block_text({"type": "child_page", "child_page": {"title": "Sub"}}) == "[page] Sub"
    assert block_text(block("image", caption=[{"plain_text": "Chart"}])) == "[image] Chart"
    assert block_text({"type": "unsupported", "unsupported": {}}) is None
