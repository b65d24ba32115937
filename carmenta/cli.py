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
}


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
        commands.add_parser(name, help=help_text)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        COMMANDS[args.command][0](args)
    except CarmentaError as error:
        print(f"\nCarmenta cannot start: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
