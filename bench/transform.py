"""Image transformation speed: the app's path next to libvips' own, and cached serving.

1. A 12-megapixel JPEG (4000x3000, gradients, shapes and sensor-like noise) is made
   with Pillow.
2. To an 800-pixel-wide WebP (quality 80), timed N times each:
   - libvips' own path: `pyvips.Image.thumbnail(path, 800)` + `webpsave`, which is
     what Supabase's transformer (imgproxy) runs on;
   - `render_variant`, the app's transform function, called directly;
   - the whole route on a cache miss: signed URL check, render in a worker
     thread, then the response (the cached variant is removed before each run).
   The medians and the ratios to libvips' time are printed (target: within 1.5x).
3. The cached variant is then fetched through the route 200 times, in process and
   over HTTP on 127.0.0.1, and p50/p95 are printed (target: p95 under 10 ms).

Nothing is asserted. Usage: .venv/bin/python bench/transform.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KEY = "bench/photo/original.jpg"


def make_photo(path: Path) -> None:
    from PIL import Image, ImageDraw, ImageFilter

    size = (4000, 3000)
    red = Image.linear_gradient("L").resize(size)
    green = Image.linear_gradient("L").rotate(90).resize(size)
    blue = Image.radial_gradient("L").resize(size)
    image = Image.merge("RGB", (red, green, blue))
    draw = ImageDraw.Draw(image)
    for index in range(60):
        x, y = (index * 613) % 3800, (index * 379) % 2800
        colour = ((index * 37) % 256, (index * 91) % 256, (index * 53) % 256)
        draw.ellipse([x, y, x + 150 + index * 3, y + 120 + index * 2], fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(2))
    # Sensor-like noise, so the JPEG compresses like a real photograph does.
    noise = Image.merge("RGB", [Image.effect_noise(size, 18 + 4 * channel) for channel in range(3)])
    image = Image.blend(image, noise, 0.3)
    image.save(path, "JPEG", quality=92)


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def percentile_ms(samples: list[float], percent: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(percent / 100 * len(ordered)) - 1))
    return ordered[index] * 1000


def check(response) -> None:
    if response.status_code != 200 or response.headers["content-type"] != "image/webp":
        raise SystemExit(f"unexpected answer: {response.status_code} {response.text[:200]}")


def time_libvips(photo: Path, out_dir: Path, runs: int) -> list[float]:
    import pyvips

    samples = []
    for run in range(runs + 1):
        started = time.perf_counter()
        pyvips.Image.thumbnail(str(photo), 800).webpsave(str(out_dir / "vips.webp"), Q=80)
        if run:  # the first run only warms up
            samples.append(time.perf_counter() - started)
    return samples


def time_render_variant(photo: Path, out_dir: Path, runs: int) -> list[float]:
    from carmenta.files.storage.base import Transform
    from carmenta.files.storage.transform import render_variant

    transform = Transform(width=800, format="webp", quality=80)
    samples = []
    for run in range(runs + 1):
        started = time.perf_counter()
        render_variant(
            source=photo,
            content_type="image/jpeg",
            transform=transform,
            dest=out_dir / "app.webp",
        )
        if run:
            samples.append(time.perf_counter() - started)
    return samples


async def time_route(store, app, url: str, runs: int) -> list[float]:
    import httpx

    samples = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for run in range(runs + 1):
            shutil.rmtree(store.root / ".variants", ignore_errors=True)
            started = time.perf_counter()
            response = await client.get(url)
            elapsed = time.perf_counter() - started
            check(response)
            if run:
                samples.append(elapsed)
    return samples


async def time_cached_in_process(app, url: str, requests: int) -> list[float]:
    import httpx

    samples = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        await client.get(url)
        for _ in range(requests):
            started = time.perf_counter()
            response = await client.get(url)
            samples.append(time.perf_counter() - started)
            check(response)
    return samples


def time_cached_over_http(app, url: str, requests: int) -> list[float] | None:
    try:
        from granian.constants import Interfaces
        from granian.server.embed import Server
    except ImportError:
        return None
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = Server(
        app, address="127.0.0.1", port=port, interface=Interfaces.ASGINL, log_enabled=False
    )
    loop = asyncio.new_event_loop()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.serve())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    samples = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.get(url)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        return None
                    time.sleep(0.02)
            for _ in range(requests):
                started = time.perf_counter()
                response = client.get(url)
                samples.append(time.perf_counter() - started)
                check(response)
    finally:
        loop.call_soon_threadsafe(server.stop)
        thread.join(10)
    return samples


async def bench_route(
    photo: Path, runs: int, requests: int
) -> tuple[list[float], list[float], list[float] | None]:
    from carmenta.api.routes import build_api
    from carmenta.files.storage import get_storage
    from carmenta.files.storage.base import Transform
    from carmenta.settings import get_settings

    store = get_storage(get_settings())
    await store.put_file(key=KEY, path=photo, content_type="image/jpeg")
    url = await store.signed_url(
        key=KEY, expires_in=3600, transform=Transform(width=800, format="webp", quality=80)
    )
    app = build_api()
    route = await time_route(store, app, url, runs)
    in_process = await time_cached_in_process(app, url, requests)
    over_http = await asyncio.to_thread(time_cached_over_http, app, url, requests)
    return route, in_process, over_http


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--requests", type=int, default=200)
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="carmenta-bench-") as folder:
        work = Path(folder)
        # The app's settings point at this scratch folder, never at real data.
        os.environ["DATA_DIR"] = str(work / "data")
        for name in ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "STORAGE_URL_SECRET"):
            os.environ.pop(name, None)
        import pyvips

        photo = work / "photo.jpg"
        make_photo(photo)
        print(
            f"source: {photo.stat().st_size / 1e6:.1f} MB JPEG, 4000x3000; "
            f"libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}, "
            f"{os.cpu_count()} CPUs, {arguments.runs} runs each (after one warm-up)"
        )

        vips = time_libvips(photo, work, arguments.runs)
        direct = time_render_variant(photo, work, arguments.runs)
        route, in_process, over_http = asyncio.run(
            bench_route(photo, arguments.runs, arguments.requests)
        )
        baseline = median_ms(vips)
        print("\n800-px-wide WebP, quality 80 (median):")
        print(f"  libvips thumbnail + webpsave   {baseline:8.1f} ms")
        for label, samples in (
            ("render_variant (app)", direct),
            ("route, cache miss (app)", route),
        ):
            value = median_ms(samples)
            print(f"  {label:<30} {value:8.1f} ms   {value / baseline:.2f}x libvips")

        print(f"\ncached variant through the route, {arguments.requests} requests:")
        for label, samples in (("in process (ASGI)", in_process), ("HTTP, 127.0.0.1", over_http)):
            if samples is None:
                print(f"  {label:<20} not measured (granian unavailable)")
                continue
            print(
                f"  {label:<20} p50 {percentile_ms(samples, 50):6.2f} ms   "
                f"p95 {percentile_ms(samples, 95):6.2f} ms   max {max(samples) * 1000:6.2f} ms"
            )


if __name__ == "__main__":
    main()
