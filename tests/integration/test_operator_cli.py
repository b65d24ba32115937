"""`python -m carmenta create-admin | export-user | delete-user`, run as operators run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

from sqlalchemy import text

from carmenta import db
from carmenta.conversations import service as conversations_service
from carmenta.settings import PROJECT_ROOT, get_settings
from tests.integration import files_support

files_client = files_support.files_client


def run_cli(*args: str, data_dir: Path, database_url: str, stdin: str | None = None):
    env = {key: value for key, value in os.environ.items() if key not in ("CARMENTA_ENV", "PORT")}
    env.update({"DATA_DIR": str(data_dir), "DATABASE_URL": database_url})
    return subprocess.run(
        [sys.executable, "-m", "carmenta", *args],
        cwd=PROJECT_ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_refused(result: subprocess.CompletedProcess, expected: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert expected in output, output


async def _user_row(email: str) -> dict | None:
    async with db.session_scope() as session:
        row = (
            await session.execute(
                text("select id, is_admin, auth_provider from users where email = :e"),
                {"e": email},
            )
        ).first()
    return dict(row._mapping) if row else None


async def test_create_admin_makes_a_new_account_then_promotes_an_existing_one(
    files_client, database_url
):
    data_dir = get_settings().data_dir
    email = f"operator-{uuid.uuid4().hex[:8]}@example.com"

    refused = run_cli("create-admin", email, data_dir=data_dir, database_url=database_url)
    assert_refused(refused, "--password-stdin")
    weak = run_cli(
        "create-admin",
        email,
        "--password-stdin",
        data_dir=data_dir,
        database_url=database_url,
        stdin="short\n",
    )
    assert_refused(weak, "stronger password")
    assert await _user_row(email) is None

    created = run_cli(
        "create-admin",
        email,
        "--password-stdin",
        data_dir=data_dir,
        database_url=database_url,
        stdin="a long operator passphrase\n",
    )
    assert created.returncode == 0, created.stderr
    assert "Created the administrator account" in created.stdout
    row = await _user_row(email)
    assert row["is_admin"] is True and row["auth_provider"] == "builtin"
    assert "a long operator passphrase" not in created.stdout + created.stderr

    # The new account signs in with that password, and is an administrator.
    from carmenta.auth import service as auth_service

    attempt = await auth_service.sign_in_with_password(
        settings=get_settings(),
        email=email,
        password="a long operator passphrase",
        user_agent=None,
        ip_address=None,
    )
    assert attempt.handoff_code is not None, attempt.error

    member = await files_support.sign_up()
    async with db.session_scope() as session:
        member_email = (
            await session.execute(
                text("select email from users where id = :id"), {"id": member.user_id}
            )
        ).scalar_one()
    promoted = run_cli("create-admin", member_email, data_dir=data_dir, database_url=database_url)
    assert promoted.returncode == 0, promoted.stderr
    assert "is now an administrator" in promoted.stdout
    assert (await _user_row(member_email))["is_admin"] is True
    user = await auth_service.current_user(settings=get_settings(), token=member.token)
    assert user is not None and user.is_admin


async def test_export_user_writes_the_zip_and_delete_user_removes_everything(
    files_client, database_url, tmp_path
):
    data_dir = get_settings().data_dir
    owner = await files_support.sign_up()
    upload = await files_support.upload(files_client, owner, "plans.txt", b"the plans\n")
    assert upload.status_code == 201, upload.text
    async with db.session_scope() as session:
        conversation = await conversations_service.create_conversation(
            session=session, owner_id=owner.user_id, title="Operators"
        )
        await conversations_service.add_user_message(
            session=session,
            owner_id=owner.user_id,
            conversation_id=conversation.id,
            content="Exported by the command line",
        )

    out = tmp_path / "export.zip"
    missing = run_cli(
        "export-user",
        "nobody@example.com",
        "--out",
        str(out),
        data_dir=data_dir,
        database_url=database_url,
    )
    assert_refused(missing, "no account matches nobody@example.com")
    assert not out.exists()

    exported = run_cli(
        "export-user",
        str(owner.user_id),
        "--out",
        str(out),
        data_dir=data_dir,
        database_url=database_url,
    )
    assert exported.returncode == 0, exported.stderr
    assert "1 conversations" in exported.stdout and "1 files" in exported.stdout
    with zipfile.ZipFile(out) as archive:
        assert json.loads(archive.read("account.json"))["id"] == str(owner.user_id)
        assert any(
            "Exported by the command line" in archive.read(name).decode()
            for name in archive.namelist()
            if name.startswith("conversations/")
        )
        files = json.loads(archive.read("files.json"))
        assert archive.read(files[0]["file"]) == b"the plans\n"
    again = run_cli(
        "export-user",
        str(owner.user_id),
        "--out",
        str(out),
        data_dir=data_dir,
        database_url=database_url,
    )
    assert_refused(again, "already exists")

    unconfirmed = run_cli(
        "delete-user", str(owner.user_id), data_dir=data_dir, database_url=database_url
    )
    assert_refused(unconfirmed, "--yes")
    assert files_support.stored_files(owner.user_id) != []

    deleted = run_cli(
        "delete-user", str(owner.user_id), "--yes", data_dir=data_dir, database_url=database_url
    )
    assert deleted.returncode == 0, deleted.stderr
    assert "Deleted the account" in deleted.stdout
    async with db.session_scope() as session:
        left = (
            await session.execute(
                text("select count(*) from users where id = :id"), {"id": owner.user_id}
            )
        ).scalar_one()
    assert left == 0
    assert files_support.stored_files(owner.user_id) == []
    gone = run_cli(
        "delete-user", str(owner.user_id), "--yes", data_dir=data_dir, database_url=database_url
    )
    assert_refused(gone, "no account matches")
