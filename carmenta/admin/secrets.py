"""Which columns the admin console must never show, list, export, edit or audit.

A column is secret when its name says so (`password_hash`, `encrypted_credentials`,
`*_hash`, `*_secret`, `*_token`, ...) or it is listed here by name. A table whose
primary key is secret (a single-use code's hash) is not administered at all.
"""

from __future__ import annotations

import re

from sqlalchemy import Column, Table

# Named explicitly as well, so renaming one of them cannot silently expose it.
SECRET_COLUMNS: frozenset[tuple[str, str]] = frozenset(
    {
        ("password_credentials", "password_hash"),
        ("service_connections", "encrypted_credentials"),
        ("oauth_states", "state_hash"),
        ("oauth_states", "code_verifier"),
        ("session_handoffs", "code_hash"),
    }
)

_SECRET_NAME = re.compile(
    r"(^|_)(password|passphrase|secret|encrypted|hash|verifier|token|signing_key|api_key"
    r"|private_key)(_|$)"
)

# Not secret, but never useful to read or edit by hand: vectors and search indexes.
_BULKY_TYPES = ("VECTOR", "TSVECTOR")


def is_secret_column(table_name: str, column_name: str) -> bool:
    return (table_name, column_name) in SECRET_COLUMNS or bool(_SECRET_NAME.search(column_name))


def is_bulky_column(column: Column) -> bool:
    type_name = type(column.type).__name__.upper()
    return type_name in _BULKY_TYPES or column.computed is not None


def is_administered(table: Table) -> bool:
    return not any(is_secret_column(table.name, column.name) for column in table.primary_key)


def visible_columns(table: Table) -> list[Column]:
    """The columns the console may show, in table order."""
    return [
        column
        for column in table.columns
        if not is_secret_column(table.name, column.name) and not is_bulky_column(column)
    ]
