"""A large upload through the app's API: throughput and the server's memory growth.

Starts the Starlette API (carmenta.api.routes:build_api) under granian on 127.0.0.1
with a throwaway database and data folder, signs a user in, and streams a WAV file
of --size-mb megabytes (generated on the fly, never held whole in memory) to
POST /files/upload. Reports loopback throughput and the peak growth of the server's
resident memory (its whole process tree, sampled every few milliseconds) over its
size after a small warm-up upload. Prints figures only; asserts nothing.

Usage: .venv/bin/python bench/upload.py [--size-mb 200] [--runs 1]
Uses DATABASE_URL's server when set (a new database on it), else the embedded
PostgreSQL the tests use.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MB = 1024 * 1024
ORIGIN = "http://localhost:3000"
CHUNK = b"\x00" * MB


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wav_stream(size: int) -> Iterator[bytes]:
    """A mono 16-bit 48 kHz WAV of exactly `size` bytes, one megabyte at a time."""
    data_size = size - 44
    yield (
        b"RIFF"
        + struct.pack("<I", 36 + data_size)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, 48000, 96000, 2, 16)
        + b"data"
        + struct.pack("<I", data_size)
    )
    left = data_size
    while left:
        piece = CHUNK if left >= MB else CHUNK[:left]
        left -= len(piece)
        yield piece


@contextmanager
def throwaway_database() -> Iterator[str]:
    from tests.database import ServerHandle, _replace_database

    admin_url = os.environ.get("DATABASE_URL")
    if admin_url:
        os.environ.setdefault("TEST_DATABASE_ADMIN_URL", _replace_database(admin_url, "postgres"))
    server = ServerHandle()
    try:
        with server.throwaway_database() as url:
            yield url
    finally:
        server.stop()


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


class PeakSampler:
    def __init__(self, process: psutil.Process, interval: float = 0.005) -> None:
        self.process = process
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.process))
            time.sleep(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss(self.process))


def start_server(port: int, env: dict[str, str]) -> subprocess.Popen:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--log-level",
            "warning",
            "carmenta.api.routes:build_api",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise SystemExit("the API server exited before it was ready")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise SystemExit("the API server did not become ready")
        time.sleep(0.1)


async def sign_in() -> str:
    from carmenta import db
    from carmenta.auth import builtin
    from carmenta.settings import get_settings

    settings = get_settings()
    async with db.session_scope() as session:
        auth_session = await builtin.sign_up(
            session=session,
            settings=settings,
            email=f"bench-{uuid.uuid4().hex[:8]}@example.com",
            password=secrets.token_urlsafe(16),
        )
        code = await builtin.create_handoff(session=session, session_id=auth_session.id)
        redeemed = await builtin.redeem_handoff(session=session, settings=settings, code=code)
    await db.dispose_engine()
    assert redeemed is not None
    return redeemed[0]


def upload(port: int, token: str, name: str, body: Iterator[bytes] | bytes) -> httpx.Response:
    headers = {
        "Origin": ORIGIN,
        "Cookie": f"carmenta_session={token}",
        "X-File-Name": quote(name, safe=""),
        "Content-Type": "application/octet-stream",
    }
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
        return client.post("/files/upload", content=body, headers=headers)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    size = args.size_mb * MB

    with throwaway_database() as database_url, tempfile.TemporaryDirectory() as scratch:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PUBLIC_URL", "SPEECH_API_URL", "SUPABASE_URL")
        }
        env.update(
            {
                "DATABASE_URL": database_url,
                "DATA_DIR": scratch,
                "PORT": "3000",
                "CARMENTA_ENV": "development",
                # Room for the benchmark's file: above the default 25 MB audio limit.
                "MAX_AUDIO_MB": str(args.size_mb + 1),
                "STORAGE_QUOTA_MB": str((args.size_mb + 1) * (args.runs + 1)),
            }
        )
        os.environ.update(env)
        from carmenta.settings import reset_settings_cache

        reset_settings_cache()
        token = asyncio.run(sign_in())
        port = free_port()
        server = start_server(port, env)
        try:
            process = psutil.Process(server.pid)
            # Warm-up: every module the upload path uses is loaded before measuring.
            warm = upload(port, token, "warm-up.wav", b"".join(wav_stream(MB)))
            if warm.status_code != 201:
                raise SystemExit(f"warm-up upload failed: {warm.status_code} {warm.text}")
            time.sleep(0.5)
            for run in range(1, args.runs + 1):
                baseline = tree_rss(process)
                with PeakSampler(process) as sampler:
                    started = time.perf_counter()
                    response = upload(port, token, f"bench-{run}.wav", wav_stream(size))
                    elapsed = time.perf_counter() - started
                if response.status_code != 201:
                    raise SystemExit(f"upload failed: {response.status_code} {response.text}")
                growth = (sampler.peak - baseline) / MB
                print(
                    f"run {run}: {args.size_mb} MB in {elapsed:.2f} s = "
                    f"{args.size_mb / elapsed:.1f} MB/s on loopback "
                    "(received, hashed, checked, stored and recorded)"
                )
                print(
                    f"run {run}: server memory {baseline / MB:.1f} MB before, "
                    f"peak {sampler.peak / MB:.1f} MB, growth {growth:.1f} MB (target < 64 MB)"
                )
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


if __name__ == "__main__":
    main()
