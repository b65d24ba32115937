"""The rule that keeps secret columns out of the admin console."""

from __future__ import annotations

import pytest

from carmenta.admin.audit import changes, json_value
from carmenta.admin.secrets import is_secret_column


@pytest.mark.parametrize(
    "column",
    [
        "password_hash",
        "encrypted_credentials",
        "code_hash",
        "state_hash",
        "code_verifier",
        "refresh_token",
        "token",
        "client_secret",
        "signing_key",
        "api_key",
        "private_key_pem",
    ],
)
def test_columns_named_like_secrets_are_secret(column):
    assert is_secret_column("any_table", column)


@pytest.mark.parametrize(
    "column",
    [
        "input_tokens",
        "output_tokens",
        "sha256",
        "ingested_sha256",
        "storage_key",
        "key",
        "credential_type",
        "email",
        "title",
    ],
)
def test_ordinary_columns_are_not_secret(column):
    assert not is_secret_column("any_table", column)


def test_audit_keeps_only_what_changed_as_json():
    import uuid
    from datetime import UTC, datetime

    row_id = uuid.uuid4()
    before = {"id": json_value(row_id), "title": "Old", "starred": False}
    after = {"id": json_value(row_id), "title": "New", "starred": False}
    assert changes(before, after) == ({"title": "Old"}, {"title": "New"})
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert json_value({"at": moment, "ids": [row_id]}) == {
        "at": "2026-01-02T03:04:05+00:00",
        "ids": [str(row_id)],
    }
