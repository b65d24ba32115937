"""Command line: `python -m carmenta <command>`."""

from __future__ import annotations

import argparse
import os
import sys

from carmenta.errors import CarmentaError


def _run(_: argparse.Namespace) -> None:
    from carmenta import launcher

    launcher.run()


def _migrate(_: argparse.Namespace) -> None:
    from carmenta import launcher

    settings = launcher.load_settings()
    with launcher.database(settings) as url:
        launcher.migrate(url)
        print("The database schema is up to date.")


def _build(_: argparse.Namespace) -> None:
    from carmenta import frontend_build, launcher

    settings = launcher.load_settings()
    built = frontend_build.ensure_built(api_url=settings.app_url)
    print("The interface was built." if built else "The interface is already up to date.")


def _worker(_: argparse.Namespace) -> None:
    from carmenta import launcher
    from carmenta.jobs import worker

    settings = launcher.load_settings()
    launcher.refuse_unsafe_production(settings)
    with launcher.database(settings):
        worker.main()


def _check(_: argparse.Namespace) -> None:
    from carmenta import launcher

    settings = launcher.load_settings()
    launcher.refuse_unsafe_production(settings)
    print(f"The configuration is valid ({settings.carmenta_env.value}).")


def _rotate_keys(_: argparse.Namespace) -> None:
    import asyncio

    from carmenta import launcher

    settings = launcher.load_settings()
    launcher.refuse_unsafe_production(settings)
    with launcher.database(settings):
        from carmenta.connections.service import rotate_encryption
        from carmenta.db import dispose_engine

        async def rotate():
            try:
                return await rotate_encryption(
                    on_batch=lambda count: count and print(f"  re-encrypted {count}…", flush=True)
                )
            finally:
                await dispose_engine()

        report = asyncio.run(rotate())
    print(f"Re-encrypted {report.rotated} stored secrets under key {report.key_id!r}.")
    if report.unreadable:
        raise CarmentaError(
            f"{len(report.unreadable)} stored secrets could not be decrypted with any key in "
            "ENCRYPTION_KEYS and were left as they are (see the log for which rows); "
            "add the missing key to the ring and run rotate-keys again"
        )


class CommandError(CarmentaError):
    """An operator command could not do what was asked; the message says why."""


def _with_database(work):
    """Run the coroutine function `work()` against the configured, migrated database."""
    import asyncio

    from carmenta import launcher

    settings = launcher.load_settings()
    launcher.refuse_unsafe_production(settings)
    with launcher.database(settings) as url:
        from carmenta.migrations import pending_revisions

        if pending_revisions(url):
            raise CommandError(
                "the database schema is not up to date: run `python -m carmenta migrate` first"
            )
        from carmenta.db import dispose_engine

        async def run():
            try:
                return await work()
            finally:
                await dispose_engine()

        return asyncio.run(run())


def _read_new_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise CommandError("no password was given on standard input")
        return password
    if not sys.stdin.isatty():
        raise CommandError(
            "no account has this email; to create one, run this in a terminal to be asked "
            "for its password, or pass --password-stdin"
        )
    import getpass

    password = getpass.getpass("Password for the new account: ")
    if getpass.getpass("The same password again: ") != password:
        raise CommandError("the two passwords differ; nothing was changed")
    return password


def _create_admin(args: argparse.Namespace) -> None:
    from carmenta.settings import get_settings

    async def work():
        from carmenta import db
        from carmenta.accounts import service as accounts
        from carmenta.auth.builtin import SignUpError

        async with db.session_scope() as session:
            existing = await accounts.find_user(session=session, reference=args.email)
        password = None
        if existing is None:
            if get_settings().uses_clerk:
                raise CommandError(
                    f"no account has the email {args.email}: with Clerk, the person signs "
                    "up first, then run this again"
                )
            password = _read_new_password(args)
        try:
            async with db.session_scope() as session:
                return await accounts.grant_admin(
                    session=session, email=args.email, password=password
                )
        except SignUpError as error:
            raise CommandError(str(error)) from None

    grant = _with_database(work)
    if grant.created:
        print(f"Created the administrator account {grant.user.email} ({grant.user.id}).")
    else:
        print(f"{grant.user.email} ({grant.user.id}) is now an administrator.")


async def _find(session, reference: str):
    from carmenta.accounts import service as accounts

    try:
        user = await accounts.find_user(session=session, reference=reference)
    except LookupError as error:
        raise CommandError(str(error)) from None
    if user is None:
        raise CommandError(f"no account matches {reference}")
    return user


def _export_user(args: argparse.Namespace) -> None:
    from pathlib import Path

    from carmenta.settings import get_settings

    out = Path(args.out)
    if out.exists():
        raise CommandError(f"{out} already exists; choose another file name")
    if not out.parent.is_dir():
        raise CommandError(f"the folder {out.parent} does not exist")

    async def work():
        from carmenta import db
        from carmenta.exports import service as exports

        async with db.session_scope() as session:
            user = await _find(session, args.user)
        partial = out.with_name(out.name + ".partial")
        try:
            summary = await exports.write_owner_archive(
                owner_id=user.id, path=partial, settings=get_settings()
            )
            partial.replace(out)
        finally:
            partial.unlink(missing_ok=True)
        return user, summary

    user, summary = _with_database(work)
    print(
        f"Exported {user.email or user.id} to {out}: {summary.conversations} conversations, "
        f"{summary.documents} documents, {summary.memories} memories, {summary.files} files, "
        f"{summary.connections} connections."
    )
    if summary.missing_files:
        print(f"  {summary.missing_files} listed files had no stored content.")


def _delete_user(args: argparse.Namespace) -> None:
    from carmenta.settings import get_settings

    if not args.yes:
        raise CommandError(
            "deleting an account cannot be undone: add --yes to delete it and everything it owns"
        )

    async def work():
        from carmenta import db
        from carmenta.accounts import service as accounts
        from carmenta.auth import clerk_api

        settings = get_settings()
        async with db.session_scope() as session:
            user = await _find(session, args.user)
        if user.auth_provider == "clerk" and settings.uses_clerk:
            try:
                await clerk_api.delete_user(
                    settings=settings, external_auth_id=user.external_auth_id
                )
            except clerk_api.ClerkApiError as error:
                raise CommandError(f"{error}; nothing was deleted") from None
        async with db.session_scope() as session:
            await accounts.delete_account(session=session, user_id=user.id)
        return user

    user = _with_database(work)
    print(f"Deleted the account {user.email or user.id} and everything it owned.")


COMMANDS = {
    "run": (_run, "start the app (embedded database unless DATABASE_URL is set)"),
    "migrate": (_migrate, "apply the database migrations"),
    "build": (_build, "build the web interface if the code changed"),
    "worker": (_worker, "run a background job worker"),
    "check": (_check, "validate the configuration"),
    "rotate-keys": (
        _rotate_keys,
        "re-encrypt stored credentials under the first ENCRYPTION_KEYS key",
    ),
    "create-admin": (
        _create_admin,
        "make the account with this email an administrator (built-in: create it if need be)",
    ),
    "export-user": (_export_user, "write a user's data to a zip file"),
    "delete-user": (_delete_user, "delete a user and everything they own"),
}


def _arguments(name: str, parser: argparse.ArgumentParser) -> None:
    if name == "create-admin":
        parser.add_argument("email")
        parser.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the new account's password from standard input instead of asking",
        )
    elif name == "export-user":
        parser.add_argument("user", help="the user's email or id")
        parser.add_argument("--out", required=True, help="the zip file to write")
    elif name == "delete-user":
        parser.add_argument("user", help="the user's email or id")
        parser.add_argument("--yes", action="store_true", help="confirm the deletion")


def _one_blas_thread() -> None:
    # The local embedding model multiplies small matrices (a message is a few dozen
    # tokens): OpenBLAS' threads cost more than they give there, and far more on
    # shared or busy CPUs, where a query's embedding took 5x longer with them. Read
    # when numpy loads, so set before anything imports it; an operator's value wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main(argv: list[str] | None = None) -> int:
    _one_blas_thread()
    parser = argparse.ArgumentParser(prog="python -m carmenta", description="Carmenta")
    commands = parser.add_subparsers(dest="command", metavar="command")
    for name, (_, help_text) in COMMANDS.items():
        _arguments(name, commands.add_parser(name, help=help_text))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        COMMANDS[args.command][0](args)
    except CommandError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    except CarmentaError as error:
        print(f"\nCarmenta cannot start: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
