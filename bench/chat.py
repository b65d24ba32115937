"""Chat on one instance: the app's added latency to the first token, and 50 replies at once.

The app is started as `python -m carmenta run` (built interface, real server) on a
throwaway database, pointed at the local OpenAI-compatible stand-in
(tests/model_servers.py), which echoes the person's message a word at a time and
records, in epoch time, when each request arrived and when its first byte went out.
By default it answers at once, so all the app does after sending the request counts
as added latency; `--provider-first-byte-ms` makes it wait as a hosted model does before
its first token, and shows what a person waits for beyond the model's own time.

1. Latency. One person signs up in Chromium, gets 20 documents in their knowledge
   base, embedded (`--documents`), so that each message is embedded and searched as a
   real person's is, and opens a conversation; then, after a few warm-ups, N times: a
   message is typed, Enter pressed 0.3 s later, and the page records (a
   keydown listener and a MutationObserver, both on performance.timeOrigin +
   performance.now()) when the first text of the new reply appears in the DOM. Per
   send: total = keypress -> first token in the DOM; the provider's time to first
   byte = its first byte out - the request's arrival; the app's added latency =
   total - provider's. Also split (same machine clock): keypress -> request at the
   provider, and provider's first byte -> first token in the DOM.
2. Concurrency. N people (built-in accounts made in process, a session cookie each)
   each follow one conversation over the websocket, as the page does (ChatState.load,
   then ChatState.send), and all send at once a message whose echo is a few hundred
   words. Afterwards the database must hold every reply `complete` with exactly the
   expected text. Reports errors, wall time, aggregate tokens/s, first-token and
   whole-reply times under load, and the app's resident memory (whole process tree)
   idle and at its peak during the run.

Prints figures next to their targets; asserts nothing. The machine's load is part of
every figure: run it on a quiet machine for numbers to compare. The machine's state is
printed before and after (how long touching 50 MB takes after a second idle): on some
machines memory is much slower to come back to in some periods, and every figure with it.

Usage: .venv/bin/python bench/chat.py [--sends 40] [--warmups 3] [--documents 20]
       [--conversations 50]
       [--reply-words 300] [--word-delay 0.01] [--skip-latency] [--skip-concurrency]
       [--provider-first-byte-ms 0 (the stand-in's wait before its first byte)]
       [--verbose (each send's timeline, and when its frames came off the network)]
       [--app-log PATH (keep the app's output)]
Port: CHAT_BENCH_PORT (default 3947, or a free one); the interface build is reused
while the port and the code stay the same. Uses DATABASE_URL's server when set (a new
database on it), else the embedded PostgreSQL the tests use.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.model_servers import (  # noqa: E402
    ModelServer,
    ModelServerState,
    RecordedRequest,
    echo_words,
)

# SQLModel nudges towards session.exec(); plain execute() is what text() queries need.
warnings.filterwarnings(
    "ignore", message=r"(?s).*You probably want to use `session.exec", category=DeprecationWarning
)

MB = 1024 * 1024
MODEL = "gpt-4.1-mini"
LATENCY_TARGET_MS = 50.0
STARTUP_TIMEOUT_SECONDS = 900
REPLY_TIMEOUT_SECONDS = 180.0
NAMESPACE = "/_event"

# Armed before each keypress: records the Enter keydown and the first moment the new
# reply (one more assistant message than before) shows any text.
# Installed before the page's own scripts: the time each websocket frame arrives, so the
# last leg splits into "the frame carrying the first words reached the page" and "React
# put them on screen".
WATCH_FRAMES = """
(() => {
  const Original = window.WebSocket;
  class Watched extends Original {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (event) => {
        const bench = window.__chatBench;
        if (bench && bench.keydown !== null && bench.firstToken === null) {
          bench.lastFrame = performance.timeOrigin + performance.now();
          const size = typeof event.data === "string" ? event.data.length : -1;
          bench.frames.push([bench.lastFrame, size]);
        }
      });
    }
  }
  window.WebSocket = Watched;
})();
"""

ARM_PAGE = """
(before) => {
  const bench = (window.__chatBench = {
    keydown: null, firstToken: null, text: null, lastFrame: null, frames: [],
  });
  // Awaited by the benchmark: polling for the first words would take the page's thread
  // (and the machine's cores) from the work being measured.
  bench.done = new Promise((resolve) => { bench.resolve = resolve; });
  const now = () => performance.timeOrigin + performance.now();
  const onKey = (event) => {
    if (event.key === "Enter" && bench.keydown === null) bench.keydown = now();
  };
  window.addEventListener("keydown", onKey, true);
  const observer = new MutationObserver(() => {
    if (bench.keydown === null) return;
    const replies = document.querySelectorAll('[data-testid="assistant-message"]');
    if (replies.length <= before) return;
    const text = replies[replies.length - 1].querySelector('[data-testid="assistant-text"]');
    const content = text ? text.textContent.trim() : "";
    if (!content) return;
    bench.firstToken = now();
    bench.frame = bench.lastFrame;
    bench.text = content;
    observer.disconnect();
    window.removeEventListener("keydown", onKey, true);
    bench.resolve(true);
  });
  observer.observe(document.body, { childList: true, subtree: true, characterData: true });
}
"""


# -- figures -----------------------------------------------------------------------------


def memory_walk_ms(megabytes: int = 50, idle: float = 1.0, rounds: int = 5) -> float:
    """How long touching one byte per 4 KB page of a buffer (plain 4 KB pages, as the
    app's own objects live on) takes after `idle` seconds, median of `rounds`: on some
    machines memory is much slower to come back to in some periods than in others, and
    every figure with it."""
    buffer = bytearray(megabytes * 1024 * 1024)
    ones = bytes([1]) * len(range(0, len(buffer), 4096))
    times = []
    for _ in range(rounds):
        time.sleep(idle)
        started = time.perf_counter()
        buffer[::4096] = ones
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def spread(values: list[float], unit: str = "ms") -> str:
    if not values:
        return "(none)"
    return (
        f"p50 {percentile(values, 0.5):7.1f} {unit}  p95 {percentile(values, 0.95):7.1f} {unit}"
        f"  max {max(values):7.1f} {unit}"
    )


# -- the app and its surroundings --------------------------------------------------------


def choose_port() -> int:
    preferred = int(os.environ.get("CHAT_BENCH_PORT", "3947"))
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]


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


def tree_cpu_seconds(process: psutil.Process) -> float:
    total = 0.0
    for member in [process, *process.children(recursive=True)]:
        try:
            times = member.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


class PeakSampler:
    """The peak resident memory of a process tree, sampled in a thread."""

    def __init__(self, process: psutil.Process, interval: float = 0.02) -> None:
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


@dataclass
class RunningApp:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def tracebacks(self) -> int:
        return self.log_path.read_text(errors="replace").count("Traceback (most recent call")


@contextmanager
def running_app(env: dict[str, str], port: int, log_path: Path) -> Iterator[RunningApp]:
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "carmenta", "run"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    app = RunningApp(f"http://localhost:{port}", process, log_path)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the app exited before it was healthy:\n{app.log_tail()}")
            try:
                if httpx.get(f"{app.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the app did not become healthy:\n{app.log_tail()}")
            time.sleep(0.5)
        yield app
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def chromium_executable() -> str | None:
    for candidate in (os.environ.get("CHROMIUM_PATH"), "chromium", "chromium-browser"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None  # Playwright's own Chromium


def last_user_text(request: RecordedRequest) -> str:
    for message in reversed(request.body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else str(content)
    return ""


def reply_request(state: ModelServerState, marker: str) -> RecordedRequest | None:
    """The streamed request that answered the message carrying `marker`."""
    matching = [
        request
        for request in list(state.requests)
        if request.api == "openai"
        and request.body.get("stream")
        and marker in last_user_text(request)
    ]
    return min(matching, key=lambda request: request.received_at) if matching else None


# -- 1. latency --------------------------------------------------------------------------


@dataclass
class LatencySample:
    total_ms: float
    provider_ms: float
    before_provider_ms: float
    after_provider_ms: float
    # Provider's first byte -> the frame with the first words at the page, and that
    # frame -> the words in the DOM.
    to_frame_ms: float | None = None
    frame_to_dom_ms: float | None = None

    @property
    def added_ms(self) -> float:
        return self.total_ms - self.provider_ms


def measure_latency(
    *,
    app: RunningApp,
    model: ModelServer,
    sends: int,
    warmups: int,
    pause: float,
    documents: int = 0,
    verbose: bool = False,
) -> list[LatencySample]:
    from playwright.sync_api import expect, sync_playwright

    from tests.e2e.pages import SignUpPage

    samples: list[LatencySample] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_executable(),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
        )
        context = browser.new_context(base_url=app.url, viewport={"width": 1280, "height": 800})
        context.add_init_script(WATCH_FRAMES)
        page = context.new_page()
        page.set_default_timeout(60_000)
        network_frames: list[tuple[float, int]] = []
        sent_frames: list[tuple[float, int]] = []
        if verbose:
            # When each frame came off the network, before the page's thread saw it:
            # Chromium stamps them on the monotonic clock this process reads too.
            devtools = context.new_cdp_session(page)
            devtools.send("Network.enable")
            monotonic_to_epoch = time.time() - time.monotonic()
            devtools.on(
                "Network.webSocketFrameReceived",
                lambda event: network_frames.append(
                    (event["timestamp"] + monotonic_to_epoch, len(event["response"]["payloadData"]))
                ),
            )
            devtools.on(
                "Network.webSocketFrameSent",
                lambda event: sent_frames.append(
                    (event["timestamp"] + monotonic_to_epoch, len(event["response"]["payloadData"]))
                ),
            )
        expect.set_options(timeout=60_000)
        email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
        SignUpPage(page).open().sign_up(email=email, password=secrets.token_urlsafe(16), name="Ada")
        page.wait_for_url(f"{app.url}/")
        if documents:
            # Playwright's loop runs in this thread: the database work gets its own.
            with concurrent.futures.ThreadPoolExecutor(1) as worker:
                worker.submit(asyncio.run, give_knowledge(email, documents)).result()

        box = page.get_by_test_id("composer-input")
        replies = page.get_by_test_id("assistant-message")

        def settle_after_reply() -> None:
            expect(replies.last).to_have_attribute("data-status", "complete")
            # The composer accepts the next message once the page stops following.
            expect(page.get_by_test_id("send")).to_be_visible()
            time.sleep(pause)

        # The first message opens the conversation (and is titled afterwards).
        box.fill("Hello, this opens the benchmark conversation")
        box.press("Enter")
        page.wait_for_url(f"{app.url}/chat/**")
        settle_after_reply()

        for number in range(warmups + sends):
            marker = f"probe{number}x{secrets.token_hex(3)}"
            box.fill(f"Latency {marker}: please answer with a few words")
            time.sleep(0.3)  # the draft's change event has reached the server
            page.evaluate(ARM_PAGE, replies.count())
            # The box has the focus (fill): Enter goes straight to it, without the
            # locator's checks running in the page while the send is measured.
            page.keyboard.press("Enter")
            page.evaluate("() => window.__chatBench.done")
            seen = page.evaluate("() => window.__chatBench")
            settle_after_reply()
            request = reply_request(model.state, marker)
            if request is None or request.first_byte_at is None:
                print(f"  send {number}: the stand-in saw no streamed request for it")
                continue
            if not seen["text"].startswith("Echo:"):
                print(f"  send {number}: unexpected first text {seen['text'][:40]!r}")
            keydown = seen["keydown"] / 1000
            first_token = seen["firstToken"] / 1000
            sample = LatencySample(
                total_ms=(first_token - keydown) * 1000,
                provider_ms=(request.first_byte_at - request.received_at) * 1000,
                before_provider_ms=(request.received_at - keydown) * 1000,
                after_provider_ms=(first_token - request.first_byte_at) * 1000,
            )
            if seen.get("frame"):
                frame = seen["frame"] / 1000
                sample.to_frame_ms = (frame - request.first_byte_at) * 1000
                sample.frame_to_dom_ms = (first_token - frame) * 1000
            if number >= warmups:
                samples.append(sample)
            if verbose:
                print(
                    f"  send {number}: keydown {keydown:.4f}, at the provider "
                    f"{request.received_at:.4f}, its first byte {request.first_byte_at:.4f}, "
                    f"in the DOM {first_token:.4f} (epoch seconds)"
                )
                frames = ", ".join(
                    f"+{(at / 1000 - keydown) * 1000:.1f} ms ({size} chars)"
                    for at, size in seen.get("frames") or []
                )
                print(f"    frames at the page after the keypress: {frames}")
                arrived = ", ".join(
                    f"+{(at - keydown) * 1000:.1f} ms ({size} chars)"
                    for at, size in network_frames
                    if keydown <= at <= first_token + 0.001
                )
                print(f"    the same frames off the network: {arrived}")
                sent = ", ".join(
                    f"+{(at - keydown) * 1000:.1f} ms ({size} chars)"
                    for at, size in sent_frames
                    if keydown <= at <= first_token + 0.001
                )
                print(f"    frames the page sent: {sent}")
        context.close()
        browser.close()
    return samples


def line(label: str, value: str) -> None:
    print(f"  {label:<42} {value}")


def report_latency(samples: list[LatencySample]) -> None:
    print(f"\nLatency, send -> first token on screen ({len(samples)} sends, one conversation):")
    added = [s.added_ms for s in samples]
    line("total (keypress -> first token in DOM)", spread([s.total_ms for s in samples]))
    line("provider's time to first byte", spread([s.provider_ms for s in samples]))
    line("app's added latency (total - provider's)", spread(added))
    line("  keypress -> request at the provider", spread([s.before_provider_ms for s in samples]))
    line("  provider's first byte -> token in DOM", spread([s.after_provider_ms for s in samples]))
    framed = [s for s in samples if s.to_frame_ms is not None]
    line("    first byte -> its frame at the page", spread([s.to_frame_ms for s in framed]))
    line("    that frame -> token in the DOM", spread([s.frame_to_dom_ms for s in framed]))
    if added:
        p95 = percentile(added, 0.95)
        verdict = "met" if p95 < LATENCY_TARGET_MS else "MISSED"
        line("target: added latency p95 < 50 ms", f"{p95:.1f} ms, {verdict}")


# -- 2. concurrency ----------------------------------------------------------------------


@dataclass
class Person:
    user_id: uuid.UUID
    cookie: str
    conversation_id: uuid.UUID
    message: str
    expected: str


KNOWLEDGE_TOPICS = (
    "garden",
    "boat",
    "taxes",
    "recipes",
    "travel",
    "health",
    "car",
    "books",
    "music",
    "family",
    "work",
    "house",
    "finance",
    "fitness",
    "languages",
)


async def give_knowledge(email: str, count: int) -> None:
    """Documents for the person signed up as `email`, embedded as the job would: each
    message they send is then embedded and searched for, as a real person's is."""
    from sqlalchemy import text

    from carmenta import db
    from carmenta.knowledge import service as knowledge
    from carmenta.knowledge.embeddings import get_local_embedder
    from carmenta.knowledge.semantic import embed_pending_chunks

    try:
        async with db.session_scope() as session:
            owner_id = (
                await session.execute(
                    text("select id from users where lower(email) = :email"), {"email": email}
                )
            ).scalar_one()
            for number in range(count):
                topic = KNOWLEDGE_TOPICS[number % len(KNOWLEDGE_TOPICS)]
                await knowledge.create_document(
                    session=session,
                    owner_id=owner_id,
                    parent_path=None,
                    title=f"Notes on {topic} {number}",
                    content=" ".join(
                        f"About {topic}: point {line} of note {number}, with a few details "
                        f"worth remembering later."
                        for line in range(12)
                    ),
                )
            await session.commit()
        async with db.session_scope() as session:
            await embed_pending_chunks(
                session=session, embedder=get_local_embedder(), limit=100_000
            )
            await session.commit()
    finally:
        await db.dispose_engine()
    print(f"the person has {count} documents in their knowledge base, embedded")


async def make_people(count: int, reply_words: int) -> list[Person]:
    """Built-in accounts with a session and an empty conversation each, made in process."""
    from carmenta import db
    from carmenta.auth import builtin, cookies
    from carmenta.conversations import service as conversations
    from carmenta.settings import get_settings

    settings = get_settings()
    cookie_name = cookies.session_cookie_name(settings)
    people: list[Person] = []
    try:
        for number in range(count):
            async with db.session_scope() as session:
                auth_session = await builtin.sign_up(
                    session=session,
                    settings=settings,
                    email=f"bench-{number}-{uuid.uuid4().hex[:8]}@example.com",
                    password=secrets.token_urlsafe(16),
                    display_name=f"Person {number}",
                )
                code = await builtin.create_handoff(session=session, session_id=auth_session.id)
                redeemed = await builtin.redeem_handoff(
                    session=session, settings=settings, code=code
                )
                if redeemed is None:
                    raise SystemExit("a benchmark session could not be created")
                conversation = await conversations.create_conversation(
                    session=session, owner_id=auth_session.user_id
                )
                await session.commit()
            words = [f"c{number}w{index}" for index in range(reply_words - 1)]
            message = " ".join(words)
            people.append(
                Person(
                    user_id=auth_session.user_id,
                    cookie=f"{cookie_name}={redeemed[0]}",
                    conversation_id=conversation.id,
                    message=message,
                    expected="".join(echo_words(message)),
                )
            )
    finally:
        await db.dispose_engine()
    return people


def state_values(update: dict[str, Any], name: str) -> list[Any]:
    """Every value of a state field in one websocket update (delta keys carry a suffix)."""
    values = []
    for substate in (update.get("delta") or {}).values():
        for key, value in substate.items():
            if key == name or key.startswith(name + "_rx_state"):
                values.append(value)
    return values


@dataclass
class Follower:
    person: Person
    updates: int = 0
    bytes_received: int = 0
    sent_at: float | None = None
    first_text_at: float | None = None
    finished_at: float | None = None
    final_status: str = ""
    errors: list[str] = field(default_factory=list)
    loaded: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def see(self, update: dict[str, Any]) -> None:
        import json

        self.updates += 1
        self.bytes_received += len(json.dumps(update))
        for value in state_values(update, "loading"):
            if value is False:
                self.loaded.set()
        for value in state_values(update, "error"):
            if value:
                self.errors.append(f"page error: {value}")
        if self.sent_at is None:
            return
        # The reply streams in LiveReplyState.reply, then joins the thread (messages).
        for live in state_values(update, "reply"):
            if live.get("id") and live.get("content") and self.first_text_at is None:
                self.first_text_at = time.perf_counter()
        for messages in state_values(update, "messages"):
            replies = [m for m in messages if m.get("role") == "assistant"]
            if not replies:
                continue
            reply = replies[-1]
            now = time.perf_counter()
            if reply.get("content") and self.first_text_at is None:
                self.first_text_at = now
            if reply.get("status") not in ("", "streaming"):
                self.final_status = reply["status"]
                if self.finished_at is None:
                    self.finished_at = now
                self.done.set()


async def follow_and_send(
    *, base_url: str, follower: Follower, start: asyncio.Event, chat_state: str
) -> None:
    import socketio

    client = socketio.AsyncClient(reconnection=False)

    @client.on("event", namespace=NAMESPACE)
    async def _on_update(update: dict[str, Any]) -> None:
        follower.see(update)

    path = f"/chat/{follower.person.conversation_id}"
    router_data = {"pathname": path, "asPath": path, "query": {}}
    try:
        await client.connect(
            f"{base_url}?token={uuid.uuid4()}",
            socketio_path=NAMESPACE,
            namespaces=[NAMESPACE],
            transports=["websocket"],
            headers={"Cookie": follower.person.cookie},
            wait_timeout=60,
        )
        await client.emit(
            "event",
            namespace=NAMESPACE,
            data={"name": f"{chat_state}.load", "payload": {}, "router_data": router_data},
        )
        await asyncio.wait_for(follower.loaded.wait(), 60)
        await start.wait()
        follower.sent_at = time.perf_counter()
        await client.emit(
            "event",
            namespace=NAMESPACE,
            data={
                "name": f"{chat_state}.send",
                "payload": {"form": {"message": follower.person.message}},
                "router_data": router_data,
            },
        )
        await asyncio.wait_for(follower.done.wait(), REPLY_TIMEOUT_SECONDS)
    except Exception as error:  # noqa: BLE001 - every failure is counted, none stops the run
        follower.errors.append(f"{type(error).__name__}: {error}")
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), 10)


async def stored_replies(database_url: str, people: list[Person]) -> dict[uuid.UUID, tuple]:
    import psycopg

    async with await psycopg.AsyncConnection.connect(
        database_url.replace("postgresql+psycopg://", "postgresql://")
    ) as connection:
        rows = await (
            await connection.execute(
                "select conversation_id, status, content, output_tokens from messages"
                " where role = 'assistant' and conversation_id = any(%s)",
                ([person.conversation_id for person in people],),
            )
        ).fetchall()
    return {row[0]: row[1:] for row in rows}


async def run_concurrency(
    *, app: RunningApp, database_url: str, people: list[Person], model: ModelServer
) -> None:
    from carmenta.state.chat import ChatState

    chat_state = ChatState.get_full_name()
    process = psutil.Process(app.process.pid)
    followers = [Follower(person) for person in people]
    start = asyncio.Event()
    tracebacks_before = app.tracebacks()
    streams_before = len(model.state.streams)
    tasks = [
        asyncio.create_task(
            follow_and_send(base_url=app.url, follower=follower, start=start, chat_state=chat_state)
        )
        for follower in followers
    ]
    await asyncio.wait_for(asyncio.gather(*(follower.loaded.wait() for follower in followers)), 120)
    await asyncio.sleep(1.0)
    idle = tree_rss(process)
    sampler = PeakSampler(process)
    cpu_before = tree_cpu_seconds(process)
    with sampler:
        started = time.perf_counter()
        start.set()
        await asyncio.gather(*tasks)
        # The replies are written by the app whether anyone follows: wait for the rows.
        deadline = time.monotonic() + REPLY_TIMEOUT_SECONDS
        while True:
            stored = await stored_replies(database_url, people)
            if all(row[0] != "streaming" for row in stored.values()) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        wall = (
            max(
                [f.finished_at for f in followers if f.finished_at is not None]
                or [time.perf_counter()]
            )
            - started
        )
    after = tree_rss(process)
    cpu = tree_cpu_seconds(process) - cpu_before

    complete = exact = 0
    problems: list[str] = []
    tokens = 0
    for person in people:
        row = stored.get(person.conversation_id)
        if row is None:
            problems.append(f"{person.conversation_id}: no reply stored")
            continue
        status, content, _ = row
        complete += status == "complete"
        if content == person.expected:
            exact += 1
            tokens += len(echo_words(person.message))
        else:
            problems.append(
                f"{person.conversation_id}: {status}, {len(content)} of "
                f"{len(person.expected)} characters"
            )
    socket_errors = [error for follower in followers for error in follower.errors]
    streams = model.state.streams[streams_before:]
    cut_streams = sum(1 for stream in streams if stream.disconnected)
    new_tracebacks = app.tracebacks() - tracebacks_before
    first_texts = [
        (f.first_text_at - f.sent_at) * 1000
        for f in followers
        if f.first_text_at is not None and f.sent_at is not None
    ]
    durations = [(f.finished_at - f.sent_at) for f in followers if f.finished_at and f.sent_at]
    words = len(echo_words(people[0].message))
    ideal = words * model.state.echo_delay

    count = len(people)
    without_complete = sum(1 for f in followers if f.final_status != "complete")
    print(f"\nConcurrency: {count} conversations streaming at once on one instance")
    line(
        "each reply",
        f"{words} words (tokens), {model.state.echo_delay * 1000:.0f} ms a word from the "
        f"stand-in (at least {ideal:.1f} s a reply)",
    )
    line("replies complete in the database", f"{complete}/{count}   (target {count}/{count})")
    line("replies with exactly the expected text", f"{exact}/{count}   (target {count}/{count})")
    line(
        "errors (target 0 each)",
        f"{len(socket_errors)} on the websocket, {without_complete} followers saw no complete"
        f" reply, {cut_streams} model streams cut, {new_tracebacks} tracebacks in the app log",
    )
    line("wall time, all sent -> last complete", f"{wall:.2f} s")
    ceiling = f" (the stand-in's pace allows {count * words / ideal:.0f})" if ideal else ""
    line("aggregate throughput", f"{tokens / wall:.0f} tokens/s{ceiling}")
    line(
        "app CPU time during the run",
        f"{cpu:.1f} s ({cpu / wall * 100:.0f}% of one core), {cpu / count * 1000:.0f} ms a "
        f"reply, {cpu / max(1, tokens) * 1e6:.0f} µs a token",
    )
    line("first token seen by each follower", spread(first_texts))
    line("whole reply seen by each follower", spread(durations, "s"))
    line(
        "updates per follower",
        f"median {statistics.median(f.updates for f in followers):.0f}, "
        f"{sum(f.bytes_received for f in followers) / MB:.1f} MB to all followers",
    )
    line(
        "app memory (process tree RSS)",
        f"idle {idle / MB:.0f} MB, peak {sampler.peak / MB:.0f} MB "
        f"(+{(sampler.peak - idle) / MB:.0f} MB), after {after / MB:.0f} MB",
    )
    for problem in (socket_errors + problems)[:10]:
        print(f"    {problem}")


# -- main --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=40)
    parser.add_argument("--warmups", type=int, default=3)
    parser.add_argument("--pause", type=float, default=1.5, help="seconds between sends")
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--reply-words", type=int, default=300)
    parser.add_argument("--word-delay", type=float, default=0.01)
    parser.add_argument(
        "--documents",
        type=int,
        default=20,
        help="documents in the latency person's knowledge base (0: none, nothing embedded)",
    )
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-concurrency", action="store_true")
    parser.add_argument("--app-log", type=Path, help="write the app's output here (kept)")
    parser.add_argument(
        "--provider-first-byte-ms",
        type=float,
        default=0.0,
        help="the stand-in waits this long before a stream's first byte, as a hosted model"
        " does before its first token (default 0: at once, so that all of the app's work"
        " after sending the request counts as added latency)",
    )
    parser.add_argument("--verbose", action="store_true", help="print each send's timeline")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # figures show as they come, even in a file

    port = choose_port()
    model = ModelServer(ModelServerState()).start()
    with throwaway_database() as database_url, tempfile.TemporaryDirectory() as scratch:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PUBLIC_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")
        }
        env.update(
            {
                "DATABASE_URL": database_url,
                "DATA_DIR": scratch,
                "PORT": str(port),
                "PUBLIC_URL": f"http://localhost:{port}",
                "CARMENTA_ENV": "development",
                "OPENAI_BASE_URL": model.openai_base_url,
                "OPENAI_API_KEY": "sk-bench-local",
                "OPENAI_MODELS": MODEL,
                "DEFAULT_MODEL": f"openai:{MODEL}",
            }
        )
        os.environ.update(env)
        from carmenta.settings import reset_settings_cache

        reset_settings_cache()
        print(f"Starting the app on port {port} (builds the interface if the code changed)…")
        load = os.getloadavg()
        print(f"machine: {os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in load)}")
        walk_before = memory_walk_ms()
        print(f"machine state: touching 50 MB (4 KB pages) after 1 s idle: {walk_before:.1f} ms")
        with running_app(env, port, args.app_log or Path(scratch) / "app.log") as app:
            started_rss = tree_rss(psutil.Process(app.process.pid))
            print(f"app memory at start (process tree RSS): {started_rss / MB:.0f} MB")
            if not args.skip_latency:
                # The provider answers its first byte at once; the rest a word every 20 ms.
                model.state.echo_delay = 0.02
                model.state.first_byte_delay = args.provider_first_byte_ms / 1000
                samples = measure_latency(
                    app=app,
                    model=model,
                    sends=args.sends,
                    warmups=args.warmups,
                    pause=args.pause,
                    documents=args.documents,
                    verbose=args.verbose,
                )
                report_latency(samples)
            if not args.skip_concurrency:
                model.state.echo_delay = args.word_delay
                people = asyncio.run(make_people(args.conversations, args.reply_words))
                asyncio.run(
                    run_concurrency(app=app, database_url=database_url, people=people, model=model)
                )
            load = os.getloadavg()
            print(f"\nmachine load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
            print(
                f"machine state: touching 50 MB (4 KB pages) after 1 s idle took"
                f" {walk_before:.1f} ms before the run, {memory_walk_ms():.1f} ms after"
                " (larger: a slower period)"
            )
    model.stop()


if __name__ == "__main__":
    main()
