"""The schema: migrations and models agree, round-trip, and keep user data owned."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from carmenta.db import create_sync_engine
from carmenta.migrations import alembic_config, include_name, upgrade_to_head
from carmenta.models import metadata


def _differences(url: str) -> list:
    engine = create_sync_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "include_name": include_name}
            )
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


def _table_names(url: str) -> set[str]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "select tablename from pg_tables where schemaname = current_schema()"
        ).fetchall()
    return {row[0] for row in rows}


def test_autogenerate_against_migrated_database_finds_no_changes(database_url):
    assert _differences(database_url) == []


def test_migration_creates_extensions_and_the_job_queue(database_url):
    with psycopg.connect(database_url) as connection:
        extensions = {
            row[0] for row in connection.execute("select extname from pg_extension").fetchall()
        }
    assert {"ltree", "vector", "pg_trgm"} <= extensions
    tables = _table_names(database_url)
    assert {"procrastinate_jobs", "procrastinate_workers", "job_progress"} <= tables
    assert {table.name for table in metadata.sorted_tables} <= tables


def test_downgrade_to_base_then_upgrade_round_trips(postgres_server):
    with postgres_server.throwaway_database(migrated=True) as url:
        command.downgrade(alembic_config(url), "base")
        leftover = {name for name in _table_names(url) if name != "alembic_version"}
        assert leftover == set()
        upgrade_to_head(url)
        assert _differences(url) == []
        assert "procrastinate_jobs" in _table_names(url)


def test_every_user_owned_table_cascades_from_users(database_url):
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            """
            select c.table_name,
                   -- distinct: a partitioned table's parts share its constraints' names.
                   (select distinct rc.delete_rule
                      from information_schema.key_column_usage k
                      join information_schema.referential_constraints rc
                        on rc.constraint_name = k.constraint_name
                      join information_schema.constraint_column_usage u
                        on u.constraint_name = k.constraint_name
                     where k.table_name = c.table_name and k.column_name = 'owner_id'
                       and u.table_name = 'users') as delete_rule
              from information_schema.columns c
             where c.column_name = 'owner_id' and c.table_schema = current_schema()
            """
        ).fetchall()
    owned = dict(rows)
    assert set(owned) >= {
        "conversations",
        "messages",
        "files",
        "service_connections",
        "oauth_states",
        "documents",
        "document_links",
        "memories",
        "job_progress",
    }
    assert all(rule == "CASCADE" for rule in owned.values()), owned


def test_primary_keys_are_uuids_and_timestamps_have_time_zones(database_url):
    with psycopg.connect(database_url) as connection:
        id_types = connection.execute(
            """
            select table_name, data_type from information_schema.columns
             where column_name = 'id' and table_schema = current_schema()
               and table_name not like 'procrastinate%%'
            """
        ).fetchall()
        naive = connection.execute(
            """
            select table_name, column_name from information_schema.columns
             where data_type = 'timestamp without time zone'
               and table_schema = current_schema() and table_name not like 'procrastinate%%'
            """
        ).fetchall()
    assert id_types and all(data_type == "uuid" for _, data_type in id_types), id_types
    assert naive == []


def test_deleting_a_user_deletes_every_row_they_own(database_url):
    user_id = uuid.uuid4()
    with psycopg.connect(database_url) as connection:
        connection.execute(
            "insert into users (id, external_auth_id, auth_provider) values (%s, %s, 'builtin')",
            (user_id, f"test-{user_id}"),
        )
        conversation_id = connection.execute(
            "insert into conversations (owner_id) values (%s) returning id", (user_id,)
        ).fetchone()[0]
        message_id = connection.execute(
            "insert into messages (conversation_id, owner_id, role, content) "
            "values (%s, %s, 'user', 'hello') returning id",
            (conversation_id, user_id),
        ).fetchone()[0]
        file_id = connection.execute(
            "insert into files (owner_id, storage_key, original_name, content_type, kind,"
            " size_bytes, sha256) values (%s, %s, 'a.pdf', 'application/pdf', 'pdf', 3, 'x')"
            " returning id",
            (user_id, f"{user_id}/f/original"),
        ).fetchone()[0]
        document_id = connection.execute(
            "insert into documents (owner_id, path, title, source, source_file_id)"
            " values (%s, 'knowledge.people.sarah', 'Sarah', 'file', %s) returning id",
            (user_id, file_id),
        ).fetchone()[0]
        connection.execute(
            "insert into document_links (owner_id, source_document_id, target_document_id,"
            " link_text) values (%s, %s, %s, 'Sarah')",
            (user_id, document_id, document_id),
        )
        connection.execute(
            "insert into memories (owner_id, content, source_message_id, embedding)"
            " values (%s, 'likes tea', %s, %s::vector)",
            (user_id, message_id, "[" + ",".join(["0.1"] * 384) + "]"),
        )
        connection.execute(
            "insert into service_connections (owner_id, provider, credential_type, account_id,"
            " account_label) values (%s, 'slack', 'oauth', 'T1:U1', 'Acme')",
            (user_id,),
        )
        connection.execute(
            "insert into oauth_states (owner_id, state_hash, provider, expires_at)"
            " values (%s, %s, 'slack', now() + interval '10 minutes')",
            (user_id, uuid.uuid4().hex),
        )
        connection.execute(
            "insert into job_progress (job_id, owner_id, task_name) values (%s, %s, 'x')",
            (abs(hash(user_id)) % 10**12, user_id),
        )
        connection.execute("delete from users where id = %s", (user_id,))
        for table in (
            "conversations",
            "messages",
            "files",
            "documents",
            "document_links",
            "memories",
            "service_connections",
            "oauth_states",
            "job_progress",
        ):
            count = connection.execute(
                f"select count(*) from {table} where owner_id = %s", (user_id,)
            ).fetchone()[0]
            assert count == 0, table
        connection.rollback()


def test_document_search_vector_is_generated_and_weighted(database_url):
    user_id = uuid.uuid4()
    with psycopg.connect(database_url) as connection:
        connection.execute(
            "insert into users (id, external_auth_id, auth_provider) values (%s, %s, 'builtin')",
            (user_id, f"test-{user_id}"),
        )
        connection.execute(
            "insert into documents (owner_id, path, title, content) values"
            " (%s, 'knowledge.recipes.soup', 'Tomato soup', 'Simmer the tomatoes.'),"
            " (%s, 'knowledge.notes.market', 'Market notes', 'Bought a tomato.')",
            (user_id, user_id),
        )
        ranked = connection.execute(
            "select title from documents where owner_id = %s"
            " and search_vector @@ websearch_to_tsquery('english', 'tomato')"
            " order by ts_rank_cd(search_vector, websearch_to_tsquery('english', 'tomato')) desc",
            (user_id,),
        ).fetchall()
        subtree = connection.execute(
            "select title from documents where owner_id = %s and path <@ 'knowledge.recipes'",
            (user_id,),
        ).fetchall()
        connection.rollback()
    assert [row[0] for row in ranked] == ["Tomato soup", "Market notes"]
    assert subtree == [("Tomato soup",)]


def test_an_ltree_path_with_invalid_labels_is_refused_by_the_database(database_url):
    with psycopg.connect(database_url) as connection:
        with pytest.raises(psycopg.errors.SyntaxError):
            connection.execute("select 'knowledge.bad label!'::ltree")
