"""Knowledge search at scale: full-text, hybrid and subtree listing latency, ingestion rate.

1. Builds, once, a dataset in a dedicated embedded PostgreSQL (.data/bench/postgres,
   one database per set of parameters, migrated with the app's Alembic migrations):
   --users users (default 1,000) holding --documents documents (default 1,000,000) of
   about 2 KB of varied English in topical clusters, --big-user-documents of them
   (default 100,000) belonging to one user, in folder trees four or five levels deep.
   Documents are split into chunks by the app's own chunker. Rows go in with binary
   COPY with the secondary indexes dropped, which are then rebuilt with the
   migrations' own definitions. Reruns with the same parameters reuse it (--rebuild
   to start again).
   Chunk vectors are SYNTHETIC: unit vectors drawn around one centroid per topic (the
   real local model embeds ~11 texts/s here, so a million real embeddings are out of
   reach). Query vectors come from the same distribution, handed to the app's
   hybrid search by an embedder that returns them, at once or (--real-query-embedding)
   after the real local model has embedded the query, so its time counts; the model's
   time for one short query is also measured separately and printed.
2. For the big user and a typical small user, runs --queries queries (varied, some
   misspelt, some quoted) through the app's service functions (real async sessions from
   carmenta.db, the same code the app runs) and, in the same run and alternating, the
   same SQL statements sent bare with psycopg (each search is one statement outside a
   transaction, on connections given the app's connection settings). Hybrid search is
   called as the chat calls it (semantic search alongside, on a second connection);
   its bare side does the same on two psycopg connections. Prints p50/p95/p99 and the service's
   overhead next to the targets.
3. Ingestion: documents per second through create_document, one transaction each,
   without and with embeddings (the real local model embedding every chunk).

Prints figures only; asserts nothing.
Usage: .venv/bin/python bench/knowledge.py [--documents N] [--users N]
       [--big-user-documents N] [--queries N] [--rebuild] [--explain] [--skip-ingest]
       [--real-query-embedding]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import queue
import statistics
import struct
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from knowledge_corpus import DIMENSIONS, TOPIC_NAMES, Corpus  # noqa: E402

from carmenta.knowledge.paths import slugify_label  # noqa: E402
from carmenta.knowledge.service import split_into_chunks  # noqa: E402

SERVER_DIR = ROOT / ".data" / "bench" / "postgres"
# Part of the cache key: a change to how data is generated makes a new database.
GENERATOR_VERSION = 2
BATCH_DOCUMENTS = 5_000
TARGETS_MS = {"full-text": 50.0, "hybrid": 80.0, "subtree": 10.0}
MAX_OVERHEAD = 0.30
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def log(message: str) -> None:
    print(message, flush=True)


# --- the server --------------------------------------------------------------------------


def start_server():
    from carmenta.embedded_postgres import start_embedded_postgres

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return start_embedded_postgres(SERVER_DIR, database="postgres")


def ensure_server_settings(server) -> None:
    """Give the dedicated server memory like a small production database has."""
    wanted = {
        "shared_buffers": "2GB",
        "effective_cache_size": "8GB",
        "work_mem": "16MB",
        # Index builds (HNSW above all) in memory, as a database this size would be given.
        "maintenance_work_mem": "2GB",
    }
    with psycopg.connect(server.admin_url(), autocommit=True) as connection:
        current = {
            name: connection.execute(f"show {name}").fetchone()[0]  # type: ignore[index]
            for name in wanted
        }
        if current == wanted:
            return
        for name, value in wanted.items():
            connection.execute(f"alter system set {name} = '{value}'")
    log(f"restarting the bench server with {wanted}")
    from embedded_postgres._commands import pg_ctl

    system_user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.data_dir, user=system_user, timeout=120)


# --- building the dataset ------------------------------------------------------------------


@dataclass
class Params:
    users: int
    documents: int
    big_user_documents: int
    document_chars: int
    seed: int

    def key(self) -> str:
        raw = json.dumps(self.__dict__ | {"version": GENERATOR_VERSION}, sort_keys=True)
        digest = hashlib.sha256(raw.encode()).hexdigest()[:10]
        return f"bench_knowledge_{self.documents}_{digest}"


@dataclass
class Dataset:
    url: str
    big_user: uuid.UUID
    small_user: uuid.UUID
    small_user_topics: list[int]
    documents: int
    chunks: int


class CopyRows:
    """Rows in PostgreSQL's binary COPY format, encoded without a per-value adapter."""

    def __init__(self) -> None:
        self.parts: list[bytes] = [b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)]

    def row(self, *fields: bytes) -> None:
        self.parts.append(struct.pack("!h", len(fields)))
        for value in fields:
            self.parts.append(struct.pack("!i", len(value)))
            self.parts.append(value)

    def finish(self) -> bytes:
        self.parts.append(struct.pack("!h", -1))
        return b"".join(self.parts)


def _ltree(path: str) -> bytes:
    return b"\x01" + path.encode()  # ltree's binary format: version 1, then the text


def _vector(values: np.ndarray) -> bytes:
    return struct.pack("!hh", DIMENSIONS, 0) + values.astype(">f4").tobytes()


def _timestamp(moment: datetime) -> bytes:
    delta = moment - PG_EPOCH
    return struct.pack("!q", (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)


@dataclass
class UserPlan:
    id: uuid.UUID
    documents: int
    topics: list[int]
    deep: bool  # the big user's tree has one more folder level
    folders: set[str] = field(default_factory=set)
    labels: dict[str, set[str]] = field(default_factory=dict)


def _plan_users(params: Params, corpus: Corpus) -> list[UserPlan]:
    rest = params.documents - params.big_user_documents
    others = params.users - 1
    plans = [UserPlan(uuid.uuid4(), params.big_user_documents, list(range(len(TOPIC_NAMES))), True)]
    for index in range(others):
        count = rest // others + (1 if index < rest % others else 0)
        topics = corpus.py_rng.sample(range(len(TOPIC_NAMES)), corpus.py_rng.randint(5, 10))
        plans.append(UserPlan(uuid.uuid4(), count, topics, False))
    return plans


def _free_label(plan: UserPlan, parent: str, label: str) -> str:
    taken = plan.labels.setdefault(parent, set())
    candidate, number = label, 1
    while candidate in taken:
        number += 1
        suffix = f"_{number}"
        candidate = label[: 64 - len(suffix)].rstrip("_") + suffix
    taken.add(candidate)
    return candidate


def _user_documents(plan: UserPlan, corpus: Corpus, chars: int) -> Iterator[tuple]:
    """(path, title, content, topic, second topic) for one user, folders included."""
    made = 0
    topic_weights = 1.0 / np.arange(1, len(plan.topics) + 1)
    topic_weights /= topic_weights.sum()
    while made < plan.documents:
        topic = plan.topics[int(corpus.rng.choice(len(plan.topics), p=topic_weights))]
        words = corpus.topic_arrays[topic]
        folder_labels = ["knowledge", TOPIC_NAMES[topic]]
        if plan.deep or corpus.py_rng.random() < 0.7:
            folder_labels.append(slugify_label(str(words[corpus.py_rng.randrange(8)])))
        if plan.deep:
            folder_labels.append(slugify_label(str(words[8 + corpus.py_rng.randrange(8)])))
        # Folders are documents too: an index page for each, made on first use.
        for depth in range(2, len(folder_labels) + 1):
            folder = ".".join(folder_labels[:depth])
            if folder not in plan.folders and made < plan.documents:
                plan.folders.add(folder)
                plan.labels.setdefault(".".join(folder_labels[: depth - 1]), set()).add(
                    folder_labels[depth - 1]
                )
                title = folder_labels[depth - 1].replace("_", " ").capitalize()
                content = corpus.content(title=title, topic=topic, second=topic, chars=300)
                made += 1
                yield folder, title, content, topic, topic
        if made >= plan.documents:
            break
        parent = ".".join(folder_labels)
        second = (
            topic if corpus.py_rng.random() < 0.5 else corpus.py_rng.randrange(len(TOPIC_NAMES))
        )
        title = corpus.title(topic=topic)
        label = _free_label(plan, parent, slugify_label(title))
        length = int(chars * corpus.py_rng.uniform(0.6, 1.4))
        content = corpus.content(title=title, topic=topic, second=second, chars=length)
        made += 1
        yield f"{parent}.{label}", title, content, topic, second


def _batches(
    plans: list[UserPlan], corpus: Corpus, chars: int
) -> Iterator[tuple[bytes, bytes, int, int]]:
    """Binary COPY payloads for documents and chunks, BATCH_DOCUMENTS at a time."""
    now = datetime.now(UTC)
    stamp = _timestamp(now)

    def generate() -> Iterator[tuple[UserPlan, tuple]]:
        for plan in plans:
            for document in _user_documents(plan, corpus, chars):
                yield plan, document

    pending: list[tuple[UserPlan, tuple]] = []

    def flush() -> tuple[bytes, bytes, int, int]:
        documents = CopyRows()
        chunk_rows: list[tuple[bytes, bytes, int, str]] = []
        chunk_topics: list[int] = []
        chunk_seconds: list[int] = []
        for plan, (path, title, content, topic, second) in pending:
            document_id = uuid.uuid4().bytes
            owner = plan.id.bytes
            documents.row(document_id, owner, _ltree(path), title.encode(), content.encode())
            for ordinal, chunk in enumerate(split_into_chunks(content)):
                chunk_rows.append((owner, document_id, ordinal, chunk))
                chunk_topics.append(topic)
                chunk_seconds.append(second)
        vectors = corpus.vectors_near(np.array(chunk_topics), np.array(chunk_seconds), 1.0)
        chunks = CopyRows()
        for (owner, document_id, ordinal, chunk), vector in zip(chunk_rows, vectors, strict=True):
            chunks.row(
                owner,
                document_id,
                struct.pack("!i", ordinal),
                chunk.encode(),
                _vector(vector),
                stamp,
            )
        return documents.finish(), chunks.finish(), len(pending), len(chunk_rows)

    for item in generate():
        pending.append(item)
        if len(pending) >= BATCH_DOCUMENTS:
            yield flush()
            pending = []
    if pending:
        yield flush()


def _secondary_indexes(connection: psycopg.Connection) -> list[tuple[str, str]]:
    return connection.execute(
        "select indexname, indexdef from pg_indexes"
        " where tablename in ('documents', 'document_chunks') and indexname not like 'pk_%'"
        " order by tablename desc, indexname"
    ).fetchall()


def build(server, params: Params, rebuild: bool) -> Dataset:
    from carmenta.migrations import upgrade_to_head

    name = params.key()
    url = server.database_url(name) if hasattr(server, "database_url") else server.url(name)
    if rebuild:
        server.drop_database(name)
    server.create_database(name)
    with psycopg.connect(url, autocommit=True) as connection:
        ready = connection.execute("select to_regclass('bench_dataset')").fetchone()[0]
        if ready is not None:
            row = connection.execute("select meta from bench_dataset").fetchone()
            if row is not None:
                meta = row[0]
                log(f"dataset {name} already built ({meta['built_at']}); --rebuild to redo")
                # Migrations added since the build (index changes) apply to it as well.
                upgrade_to_head(url)
                return Dataset(
                    url=url,
                    big_user=uuid.UUID(meta["big_user"]),
                    small_user=uuid.UUID(meta["small_user"]),
                    small_user_topics=meta["small_user_topics"],
                    documents=meta["documents"],
                    chunks=meta["chunks"],
                )
    # Anything half-built goes; the build starts from an empty, migrated database.
    server.drop_database(name)
    server.create_database(name)
    log(f"building {name}: {params.__dict__}")
    upgrade_to_head(url)
    corpus = Corpus(seed=params.seed)
    plans = _plan_users(params, corpus)
    small = plans[len(plans) // 2]
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("create table bench_dataset (meta jsonb not null)")
        indexes = _secondary_indexes(connection)
        for index_name, _ in indexes:
            connection.execute(f'drop index "{index_name}"')
        # The rows are consistent by construction; foreign-key triggers would only slow COPY.
        connection.execute("set session_replication_role = replica")
        with connection.cursor() as cursor:
            with cursor.copy(
                "copy users (id, external_auth_id, auth_provider, email, display_name) from stdin"
            ) as copy:
                for number, plan in enumerate(plans):
                    copy.write_row(
                        (
                            plan.id,
                            f"bench-{plan.id}",
                            "builtin",
                            f"user{number}@example.com",
                            f"User {number}",
                        )
                    )
        done_documents = done_chunks = 0
        # Text is generated in a thread while the server computes the previous batch's
        # search vectors, so both cores are busy rather than one at a time.
        payloads: queue.Queue = queue.Queue(maxsize=2)

        def produce() -> None:
            try:
                for payload in _batches(plans, corpus, params.document_chars):
                    payloads.put(payload)
            finally:
                payloads.put(None)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        while (payload := payloads.get()) is not None:
            documents, chunks, document_count, chunk_count = payload
            with connection.cursor() as cursor:
                with cursor.copy(
                    "copy documents (id, owner_id, path, title, content) from stdin (format binary)"
                ) as copy:
                    copy.write(documents)
                with cursor.copy(
                    "copy document_chunks (owner_id, document_id, ordinal, content, embedding,"
                    " embedded_at) from stdin (format binary)"
                ) as copy:
                    copy.write(chunks)
            done_documents += document_count
            done_chunks += chunk_count
            elapsed = time.perf_counter() - started
            rate = done_documents / elapsed
            left = (params.documents - done_documents) / rate if rate else 0
            if done_documents % 50_000 < BATCH_DOCUMENTS or done_documents == params.documents:
                log(
                    f"  {done_documents:>9,} documents {done_chunks:>10,} chunks "
                    f"{rate:7.0f} docs/s, ~{left / 60:.0f} min of loading left"
                )
        producer.join()
        connection.execute("set session_replication_role = origin")
        log(f"loaded in {(time.perf_counter() - started) / 60:.1f} min; rebuilding indexes")
        connection.execute("set maintenance_work_mem = '10GB'")
        connection.execute("set max_parallel_maintenance_workers = 1")
        for index_name, definition in indexes:
            index_started = time.perf_counter()
            connection.execute(definition)
            log(f"  {index_name}: {time.perf_counter() - index_started:.0f} s")
        connection.execute("vacuum (analyze) documents")
        connection.execute("vacuum (analyze) document_chunks")
        connection.execute("vacuum (analyze) users")
        meta = {
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "params": params.__dict__,
            "big_user": str(plans[0].id),
            "small_user": str(small.id),
            "small_user_topics": small.topics,
            "documents": done_documents,
            "chunks": done_chunks,
            "build_minutes": round((time.perf_counter() - started) / 60, 1),
        }
        connection.execute("insert into bench_dataset (meta) values (%s)", (json.dumps(meta),))
    log(f"dataset built in {meta['build_minutes']} min")
    return Dataset(url, plans[0].id, small.id, small.topics, done_documents, done_chunks)


# --- measuring -------------------------------------------------------------------------------


@dataclass
class Timings:
    service: list[float] = field(default_factory=list)
    bare: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def report(label: str, kind: str, timings: Timings) -> dict:
    service = [t * 1000 for t in timings.service]
    bare = [t * 1000 for t in timings.bare]
    p = {q: (_percentile(service, q), _percentile(bare, q)) for q in (0.5, 0.95, 0.99)}
    overhead_p50 = p[0.5][0] / p[0.5][1] - 1
    overhead_p95 = p[0.95][0] / p[0.95][1] - 1
    target = TARGETS_MS[kind]
    verdict = "ok" if p[0.95][0] < target else "MISSED"
    overhead_verdict = "ok" if overhead_p50 <= MAX_OVERHEAD else "MISSED"
    log(
        f"{label:<28} service p50 {p[0.5][0]:7.1f}  p95 {p[0.95][0]:7.1f}  p99 {p[0.99][0]:7.1f} ms"
        f" | bare p50 {p[0.5][1]:7.1f}  p95 {p[0.95][1]:7.1f}  p99 {p[0.99][1]:7.1f} ms"
        f" | overhead p50 {overhead_p50:+5.0%} p95 {overhead_p95:+5.0%}"
        f" | p95 < {target:.0f} ms: {verdict}; overhead <= 30%: {overhead_verdict}"
        f" | {statistics.mean(timings.rows):.0f} rows avg"
    )
    return {"label": label, "p": p, "overhead_p50": overhead_p50, "overhead_p95": overhead_p95}


class QueryVectors:
    """An Embedder for the benchmark's queries: each query's synthetic vector."""

    dimensions = DIMENSIONS
    model_name = "synthetic-topic-vectors"

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors = vectors

    def embed(self, texts, *, batch_size: int = 32) -> np.ndarray:
        return np.stack([self.vectors[text] for text in texts])

    async def embed_async(self, texts, *, batch_size: int = 32) -> np.ndarray:
        return self.embed(texts)


class TimedByRealModel(QueryVectors):
    """The synthetic vectors, returned only once the real local model has embedded the
    query: hybrid search then takes the real model's time (the chunk vectors being
    synthetic, its vector would match nothing)."""

    model_name = "synthetic-topic-vectors, real model's time"

    def __init__(self, vectors: dict[str, np.ndarray], model) -> None:
        super().__init__(vectors)
        self.model = model

    async def embed_async(self, texts, *, batch_size: int = 32) -> np.ndarray:
        await self.model.embed_async(texts, batch_size=batch_size)
        return self.embed(texts)


async def _timed_pair(
    service: Callable[[], Awaitable[int]],
    bare: Callable[[], Awaitable[int]],
    timings: Timings,
    flip: bool,
) -> None:
    for which in (bare, service) if flip else (service, bare):
        started = time.perf_counter()
        rows = await which()
        elapsed = time.perf_counter() - started
        if which is service:
            timings.service.append(elapsed)
            timings.rows.append(rows)
        else:
            timings.bare.append(elapsed)


async def measure(
    dataset: Dataset,
    query_count: int,
    explain: bool,
    real_query_embedding: bool,
    only: set[str],
) -> list[dict]:
    from carmenta import db
    from carmenta.knowledge import search as search_module
    from carmenta.knowledge import semantic as semantic_module
    from carmenta.knowledge import service as service_module
    from carmenta.knowledge.search import (
        MAX_LIMIT,
        MAX_RANKED_CANDIDATES,
        SIMILARITY_WEIGHT,
        TITLE_SIMILARITY_THRESHOLD,
        clean_query,
        search_documents,
    )
    from carmenta.knowledge.semantic import _vector_literal, hybrid_search
    from carmenta.knowledge.service import list_tree_on
    from carmenta.settings import reset_settings_cache

    os.environ["DATABASE_URL"] = dataset.url
    reset_settings_cache()
    await db.dispose_engine()

    corpus = Corpus(seed=99)
    search_sql = search_module.SEARCH_SQL
    semantic_sql = semantic_module.SEMANTIC_SQL
    list_sql = service_module.LIST_TREE_SQL

    async def one_user(label: str, owner: uuid.UUID, topics: list[int]) -> None:
        queries = [corpus.query(topics=topics) for _ in range(query_count)]
        cleaned = [(clean_query(text), topic) for text, topic in queries]
        vectors = corpus.vectors_near(
            np.array([t for _, t in cleaned]), np.array([t for _, t in cleaned]), 1.0
        )
        by_text = {text: v for (text, _), v in zip(cleaned, vectors, strict=True)}
        embedder = TimedByRealModel(by_text, model) if model else QueryVectors(by_text)
        folders = [
            row[0]
            for row in await (
                await bare.execute(
                    "select subpath(path, 0, %s)::text from documents"
                    " where owner_id = %s and nlevel(path) > %s group by 1 order by 1",
                    (4 if label == "big user" else 3, owner, 4 if label == "big user" else 3),
                )
            ).fetchall()
        ]
        roots = [folders[corpus.py_rng.randrange(len(folders))] for _ in range(query_count)]

        def semantic_statements(vector: np.ndarray) -> list[tuple[str, dict]]:
            return [
                (
                    semantic_sql,
                    {
                        "vector": _vector_literal(vector),
                        "owner": owner,
                        "subtree": None,
                        # As the service asks for the 20 semantic hits of a hybrid search.
                        "candidates": 20 * semantic_module.CANDIDATE_CHUNKS_PER_HIT,
                        "exact_below": semantic_module.EXACT_SEARCH_BELOW_CHUNKS,
                    },
                ),
            ]

        def search_params(text: str, limit: int) -> dict:
            return {
                "owner": owner,
                "query": text,
                "subtree": None,
                "threshold": TITLE_SIMILARITY_THRESHOLD,
                "weight": SIMILARITY_WEIGHT,
                "limit": max(1, min(limit, MAX_LIMIT)),
                "candidates": MAX_RANKED_CANDIDATES,
            }

        # The search box and the chat search outside a transaction (each search is one
        # statement; the settings it relies on are the connection's). The bare side
        # sends the same statement from a plain psycopg connection with the same
        # settings: no pool, ORM or dataclasses.
        async def fts_service(text: str) -> int:
            async with db.statement_scope() as session:
                return len(await search_documents(session=session, owner_id=owner, query=text))

        async def fts_bare(text: str) -> int:
            cursor = await bare.execute(search_sql, search_params(text, 20))
            return len(await cursor.fetchall())

        # As the app's chat and research call it: the query is embedded while the
        # full-text search runs, the semantic search runs alongside on a second connection.
        async def hybrid_service(text: str) -> int:
            async with db.statement_scope() as session:
                hits = await hybrid_search(
                    session=session, owner_id=owner, query=text, embedder=embedder, parallel=True
                )
                return len(hits)

        async def bare_semantic(text: str) -> int:
            vector = (await embedder.embed_async([text]))[0]
            for statement, params in semantic_statements(vector):
                cursor = await second.execute(statement, params)
            return len(await cursor.fetchall())

        async def hybrid_bare(text: str) -> int:
            _, semantic_rows = await asyncio.gather(fts_bare(text), bare_semantic(text))
            return semantic_rows

        # The Knowledge page lists a tree in one statement outside a transaction
        # (db.statement_connection); the bare side sends that statement the same way.
        async def list_service(root: str) -> int:
            async with db.statement_connection() as connection:
                return len(await list_tree_on(connection=connection, owner_id=owner, root=root))

        async def list_bare(root: str) -> int:
            cursor = await bare.execute(
                list_sql, {"owner": owner, "root": root, "root_end": root + "0"}
            )
            return len(await cursor.fetchall())

        if explain:
            async with bare.transaction():
                for text, _ in cleaned[:3]:
                    await _explain(bare, search_sql, search_params(text, 20), f"full-text {text!r}")
                for statement, params in semantic_statements(vectors[0]):
                    await _explain(bare, statement, params, "semantic")
                await _explain(
                    bare,
                    list_sql,
                    {"owner": owner, "root": roots[0], "root_end": roots[0] + "0"},
                    "subtree",
                )

        # Warm the pool, the caches and the planner before timing anything.
        for text, _ in cleaned[:10]:
            await fts_service(text)
            await hybrid_service(text)
        for root in roots[:10]:
            await list_service(root)

        for kind, items, service, bare_call in (
            ("full-text", [t for t, _ in cleaned], fts_service, fts_bare),
            ("hybrid", [t for t, _ in cleaned], hybrid_service, hybrid_bare),
            ("subtree", roots, list_service, list_bare),
        ):
            if kind not in only:
                continue
            timings = Timings()
            for number, item in enumerate(items):
                await _timed_pair(
                    lambda item=item, service=service: service(item),
                    lambda item=item, bare_call=bare_call: bare_call(item),
                    timings,
                    flip=number % 2 == 1,
                )
            results.append(report(f"{kind} / {label}", kind, timings))

    results = []
    model = None
    if real_query_embedding:
        from carmenta.knowledge.embeddings import LocalEmbedder

        model = LocalEmbedder()
        model.load()
    bare = await psycopg.AsyncConnection.connect(dataset.url, autocommit=True)
    second = await psycopg.AsyncConnection.connect(dataset.url, autocommit=True)
    settings = db.connection_settings_statement()
    assert settings is not None
    for connection in (bare, second):
        await connection.execute(*settings)
    try:
        for label, owner, topics in (
            ("big user", dataset.big_user, list(range(len(TOPIC_NAMES)))),
            ("small user", dataset.small_user, dataset.small_user_topics),
        ):
            await one_user(label, owner, topics)
    finally:
        await bare.close()
        await second.close()
        await db.dispose_engine()
    return results


async def _explain(connection, sql: str, params: dict, label: str) -> None:
    cursor = await connection.execute("explain (analyze, buffers) " + sql, params)
    log(f"--- plan: {label}")
    for (line,) in await cursor.fetchall():
        log("    " + line)


# --- ingestion -------------------------------------------------------------------------------


async def ingest(dataset: Dataset, without: int, with_embeddings: int) -> None:
    from sqlalchemy import text

    from carmenta import db
    from carmenta.knowledge.embeddings import LocalEmbedder
    from carmenta.knowledge.semantic import embed_pending_chunks
    from carmenta.knowledge.service import create_document

    corpus = Corpus(seed=7)
    owner = dataset.big_user
    folder = f"knowledge.ingest_{uuid.uuid4().hex[:8]}"

    async def create(count: int) -> None:
        for _ in range(count):
            topic = corpus.py_rng.randrange(len(TOPIC_NAMES))
            title = corpus.title(topic=topic)
            content = corpus.content(title=title, topic=topic, second=topic, chars=2000)
            async with db.session_scope() as session:
                await create_document(
                    session=session,
                    owner_id=owner,
                    parent_path=folder,
                    title=title,
                    content=content,
                )

    async def remove() -> None:
        # The dataset stays as built; nothing written here is left for the next run.
        async with db.session_scope() as session:
            await session.execute(
                text("delete from documents where owner_id = :owner and path <@ cast(:p as ltree)"),
                {"owner": owner, "p": folder},
            )

    try:
        started = time.perf_counter()
        await create(without)
        elapsed = time.perf_counter() - started
        log(
            f"ingestion without embeddings: {without / elapsed:7.1f} docs/s"
            f" ({without} documents of ~2 KB into the big user's tree, one transaction each)"
        )
        await remove()
        embedder = LocalEmbedder()
        embedder.load()
        query_times = []
        for text_ in ("garden compost", "tax refund", "flight to lisbon", "sourdough", "chess"):
            started = time.perf_counter()
            await embedder.embed_async([text_])
            query_times.append(time.perf_counter() - started)
        log(
            "real local model, one short query (what hybrid search adds to the figures above): "
            f"{statistics.median(query_times) * 1000:.0f} ms median of {len(query_times)}"
        )
        started = time.perf_counter()
        await create(with_embeddings)
        chunks = 0
        while True:
            async with db.session_scope() as session:
                done = await embed_pending_chunks(session=session, embedder=embedder)
            chunks += done
            if not done:
                break
        elapsed = time.perf_counter() - started
        log(
            f"ingestion with embeddings:    {with_embeddings / elapsed:7.1f} docs/s"
            f" ({with_embeddings} documents, {chunks} chunks embedded by the real local model)"
        )
    finally:
        await remove()
        await db.dispose_engine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--documents", type=int, default=1_000_000)
    parser.add_argument("--big-user-documents", type=int, default=100_000)
    parser.add_argument("--document-chars", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ingest", type=int, default=300, help="documents without embeddings")
    parser.add_argument("--ingest-embedded", type=int, default=100, help="documents with them")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--explain", action="store_true", help="print the plans of one query each")
    parser.add_argument(
        "--only", choices=sorted(TARGETS_MS), action="append", help="measure only these searches"
    )
    parser.add_argument(
        "--real-query-embedding",
        action="store_true",
        help="hybrid search waits for the real local model to embed each query",
    )
    args = parser.parse_args()

    params = Params(
        args.users, args.documents, args.big_user_documents, args.document_chars, args.seed
    )
    server = start_server()
    ensure_server_settings(server)
    dataset = build(server, params, args.rebuild)
    log(
        f"dataset: {dataset.documents:,} documents, {dataset.chunks:,} chunks, {args.users} users; "
        f"big user {args.big_user_documents:,} documents. Chunk and query vectors are "
        "SYNTHETIC (unit vectors around topic centroids), not the model's."
    )
    if args.build_only:
        return
    log(
        f"{args.queries} queries per user and operation; times include the round trip. "
        f"Load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    log(
        "hybrid query embedding: "
        + ("the real local model's time" if args.real_query_embedding else "synthetic, instant")
    )
    asyncio.run(
        measure(
            dataset,
            args.queries,
            args.explain,
            args.real_query_embedding,
            only=set(args.only or TARGETS_MS),
        )
    )
    log(f"load average after: {os.getloadavg()[0]:.1f}")
    if not args.skip_ingest:
        asyncio.run(ingest(dataset, args.ingest, args.ingest_embedded))


if __name__ == "__main__":
    main()
