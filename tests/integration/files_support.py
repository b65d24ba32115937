"""What the file tests share: signed-in users, an upload client, and looks into both stores."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import text

from carmenta import db
from carmenta.api.routes import build_api
from carmenta.auth import builtin
from carmenta.files.storage.local import LocalStore
from carmenta.settings import get_settings, reset_settings_cache

ORIGIN = "http://localhost:3000"


@dataclass(frozen=True)
class SignedIn:
    user_id: uuid.UUID
    token: str

    @property
    def cookie(self) -> str:
        return f"carmenta_session={self.token}"


async def sign_up() -> SignedIn:
    """A new built-in account and a session token for it."""
    settings = get_settings()
    async with db.session_scope() as session:
        auth_session = await builtin.sign_up(
            session=session,
            settings=settings,
            email=f"files-{uuid.uuid4().hex[:10]}@example.com",
            password="correct horse battery",
        )
        code = await builtin.create_handoff(session=session, session_id=auth_session.id)
        redeemed = await builtin.redeem_handoff(session=session, settings=settings, code=code)
    assert redeemed is not None
    token, auth_session = redeemed
    return SignedIn(user_id=auth_session.user_id, token=token)


def upload_headers(user: SignedIn | None, name: str, **extra: str) -> dict[str, str]:
    headers = {"Origin": ORIGIN, "X-File-Name": quote(name, safe="")}
    if user is not None:
        headers["Cookie"] = user.cookie
    headers.update(extra)
    return headers


async def upload(
    client: httpx.AsyncClient, user: SignedIn | None, name: str, body: bytes, **headers: str
) -> httpx.Response:
    return await client.post(
        "/files/upload", content=body, headers=upload_headers(user, name, **headers)
    )


def configure(monkeypatch: pytest.MonkeyPatch, data_dir: Path, **env: str) -> None:
    """Point the app at `data_dir` (store, keys, scratch) with these extra settings."""
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    monkeypatch.delenv("PUBLIC_URL", raising=False)
    monkeypatch.setenv("PORT", "3000")
    for name in ("SPEECH_API_URL", "SPEECH_API_KEY", "SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_settings_cache()


@pytest.fixture
async def files_client(database_url, monkeypatch, tmp_path):
    configure(monkeypatch, tmp_path)
    await db.dispose_engine()
    transport = httpx.ASGITransport(app=build_api())
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN, timeout=60) as http:
        yield http
    await cancel_pending_file_jobs()
    await db.dispose_engine()
    reset_settings_cache()


async def cancel_pending_file_jobs() -> None:
    """Jobs the tests queued but did not run must not be picked up by later workers."""
    async with db.session_scope() as session:
        await session.execute(
            text(
                "update procrastinate_jobs set status = 'cancelled'"
                " where task_name = 'files.process' and status = 'todo'"
            )
        )


def store() -> LocalStore:
    from carmenta.files.storage import get_storage

    found = get_storage(get_settings())
    assert isinstance(found, LocalStore)
    return found


def stored_files(user_id: uuid.UUID) -> list[str]:
    """Every file the local store keeps for this user: objects, their metadata, variants."""
    root = get_settings().local_storage_dir
    found = []
    for base in (root, root / ".meta", root / ".variants"):
        folder = base / str(user_id)
        if folder.exists():
            found += [str(path.relative_to(root)) for path in folder.rglob("*") if path.is_file()]
    return sorted(found)


def scratch_files() -> list[Path]:
    folder = get_settings().data_dir / "tmp"
    return sorted(folder.rglob("*")) if folder.exists() else []


async def file_rows(user_id: uuid.UUID) -> list[dict]:
    async with db.session_scope() as session:
        result = await session.execute(
            text("select * from files where owner_id = :owner order by created_at"),
            {"owner": user_id},
        )
        return [dict(row) for row in result.mappings().all()]


async def file_jobs(user_id: uuid.UUID) -> list[dict]:
    async with db.session_scope() as session:
        result = await session.execute(
            text(
                "select j.id, j.args, j.status::text as status from job_progress p"
                " join procrastinate_jobs j on j.id = p.job_id"
                " where p.owner_id = :owner and p.task_name = 'files.process'"
            ),
            {"owner": user_id},
        )
        return [dict(row) for row in result.mappings().all()]


async def assert_nothing_kept(user: SignedIn) -> None:
    assert await file_rows(user.user_id) == []
    assert stored_files(user.user_id) == []
    assert await file_jobs(user.user_id) == []
    assert scratch_files() == []


async def cancel_pending_jobs_of(user_id: uuid.UUID) -> None:
    """Cancel the user's queued jobs, so later workers in the run do not pick them up."""
    async with db.session_scope() as session:
        await session.execute(
            text(
                "update procrastinate_jobs set status = 'cancelled' where status = 'todo'"
                " and id in (select job_id from job_progress where owner_id = :owner)"
            ),
            {"owner": user_id},
        )
