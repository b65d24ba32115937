"""Time from `python -m carmenta run` to a healthy /health, cold and warm.

Cold: a new data folder (initdb, migrations; the interface build is reused when the
code did not change). Warm: the same folder again, as a second `make run` would.
Usage: .venv/bin/python bench/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def time_to_healthy(data_dir: Path, port: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PUBLIC_URL")}
    env.update({"DATA_DIR": str(data_dir), "PORT": str(port)})
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "carmenta", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit("the app exited before it was healthy")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - started
            except OSError:
                time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(scratch) / "data"
        # Builds the interface for this port once, so it is not part of the figures.
        time_to_healthy(Path(scratch) / "warmup", port)
        cold = time_to_healthy(data_dir, port)
        warm = [time_to_healthy(data_dir, port) for _ in range(args.runs)]
    print(f"cold start (new data folder): {cold:.2f} s")
    print(
        f"warm restart ({args.runs} runs): median {statistics.median(warm):.2f} s, "
        f"max {max(warm):.2f} s"
    )


if __name__ == "__main__":
    main()
