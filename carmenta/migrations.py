"""Applying and checking Alembic migrations from code (CLI, launcher, tests)."""

from __future__ import annotations

import re

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from carmenta.settings import PROJECT_ROOT

# The job queue's tables come from its own SQL, applied by the first migration;
# they are not models, so comparisons leave them alone.
QUEUE_TABLE_PREFIX = "procrastinate_"
# The parts of a partitioned table (`document_chunks_part_07`) are made by its
# migration; the model describes the partitioned table as a whole.
PARTITION_NAME = re.compile(r"^\w+_part_\d+$")


def include_name(name: str | None, type_: str, parent_names: dict) -> bool:
    if type_ != "table" or name is None:
        return True
    return not (name.startswith(QUEUE_TABLE_PREFIX) or PARTITION_NAME.match(name))


def alembic_config(database_url: str | None = None) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "alembic"))
    config.attributes["configure_logger"] = False
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config


def upgrade_to_head(database_url: str | None = None) -> None:
    command.upgrade(alembic_config(database_url), "head")


def pending_revisions(database_url: str | None = None) -> list[str]:
    """Revisions not yet applied to the database, oldest first."""
    from carmenta.db import create_sync_engine

    config = alembic_config(database_url)
    script = ScriptDirectory.from_config(config)
    engine = create_sync_engine(database_url)
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()
    pending = []
    for revision in script.walk_revisions():
        if revision.revision in current:
            break
        pending.append(revision.revision)
    return list(reversed(pending))
