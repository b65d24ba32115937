from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

# Tests never read the developer's `.env` or data: everything they need is set here.
os.environ.setdefault("CARMENTA_ENV", "development")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    from tests.database import ServerHandle

    server = ServerHandle()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def database_url(postgres_server) -> Iterator[str]:
    """A migrated throwaway database for the whole run; the app's settings point at it."""
    from carmenta.settings import reset_settings_cache

    with postgres_server.throwaway_database() as url:
        previous = os.environ.get("DATABASE_URL")
        os.environ["DATABASE_URL"] = url
        reset_settings_cache()
        yield url
        if previous is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = previous
        reset_settings_cache()


@pytest.fixture(scope="session")
async def async_engine(database_url: str):
    from sqlalchemy.ext.asyncio import create_async_engine

    from carmenta.db import prepare_engine, sqlalchemy_url

    engine = create_async_engine(sqlalchemy_url(database_url))
    prepare_engine(engine)  # the app's connection settings, as its own engines have them
    yield engine
    await engine.dispose()


@pytest.fixture
async def session(async_engine) -> AsyncIterator[object]:
    """A session whose work is rolled back after the test, commits included."""
    from sqlmodel.ext.asyncio.session import AsyncSession

    async with async_engine.connect() as connection:
        transaction = await connection.begin()
        db_session = AsyncSession(
            bind=connection,
            expire_on_commit=False,
            join_transaction_mode="create_savepoint",
        )
        try:
            yield db_session
        finally:
            await db_session.close()
            await transaction.rollback()


_LAYER_ORDER = {"unit": 0, "integration": 1, "e2e": 2}


def pytest_collection_modifyitems(config, items):
    # Fast layers first; the browser tests hold an event loop in the main thread for
    # the rest of the session, so they must come after every asyncio test.
    def layer(item) -> int:
        parts = item.path.relative_to(config.rootpath).parts
        return _LAYER_ORDER.get(parts[1] if len(parts) > 1 else "", 1)

    # A test that starts its own app rebuilds the interface for its own port, which
    # the shared e2e app would then serve: those run after every other test.
    def order(item) -> tuple[int, int]:
        return layer(item), 1 if item.get_closest_marker("own_app") else 0

    items.sort(key=order)
