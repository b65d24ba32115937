"""Slack's v0 request signature and its five-minute window, on a fixed clock."""

import hashlib
import hmac

import pytest

from carmenta.connections.webhooks import WebhookSignatureError, verify_slack_request

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BODY = b'{"type":"event_callback","team_id":"T1"}'
SENT_AT = 1_700_000_000


def _signature(timestamp: str, body: bytes = BODY, secret: str = SECRET) -> str:
    digest = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
    return "v0=" + digest.hexdigest()


def _verify(*, now: float, body: bytes = BODY, signature: str | None = None) -> None:
    timestamp = str(SENT_AT)
    verify_slack_request(
        secret=SECRET,
        body=body,
        timestamp=timestamp,
        signature=signature if signature is not None else _signature(timestamp),
        now=now,
    )


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_a_signed_request_within_five_minutes_either_way_passes(offset):
    _verify(now=SENT_AT + offset)


@pytest.mark.parametrize("offset", [-301, 301, 86_400])
def test_a_request_a_second_outside_the_window_is_refused(offset):
    with pytest.raises(WebhookSignatureError, match="five minutes"):
        _verify(now=SENT_AT + offset)


def test_a_changed_body_or_another_secret_is_refused():
    with pytest.raises(WebhookSignatureError, match="does not match"):
        _verify(now=SENT_AT, body=BODY + b" ")
    with pytest.raises(WebhookSignatureError, match="does not match"):
        _verify(now=SENT_AT, signature=_signature(str(SENT_AT), secret="another"))


@pytest.mark.parametrize(
    ("timestamp", "signature", "message"),
    [
        (None, "v0=00", "not signed"),
        (str(SENT_AT), None, "not signed"),
        ("soon", "v0=00", "not a number"),
    ],
)
def test_missing_or_malformed_headers_are_refused(timestamp, signature, message):
    with pytest.raises(WebhookSignatureError, match=message):
        verify_slack_request(
            secret=SECRET, body=BODY, timestamp=timestamp, signature=signature, now=SENT_AT
        )
