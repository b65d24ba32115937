"""Documents put into a running app's database the way the app itself would."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta.db import sqlalchemy_url
from carmenta.knowledge import service as knowledge


async def _create(database_url: str, email: str, title: str, content: str) -> str:
    engine = create_async_engine(sqlalchemy_url(database_url))
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            owner = (
                await session.execute(
                    text("select id from users where lower(email) = lower(:email)"),
                    {"email": email},
                )
            ).scalar_one()
            document = await knowledge.create_document(
                session=session,
                owner_id=owner,
                parent_path="knowledge",
                title=title,
                content=content,
            )
            await session.commit()
            return str(document.id)
    finally:
        await engine.dispose()


def create_document(database_url: str, email: str, *, title: str, content: str) -> str:
    # Playwright's sync API owns this thread's event loop; the database work gets its own.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _create(database_url, email, title, content)).result()
