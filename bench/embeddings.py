"""Local embedding speed: texts per second for batches of ~2 KB documents on this CPU.

1. The weights load once (timed: the first job in a process pays this).
2. N documents of about 2,000 characters each, English-like prose made from a fixed
   word list, are embedded in batches of 32; each is cut at 256 tokens, so this
   is the cost of one full-length chunk per text.
3. Short texts (one sentence, ~15 tokens) are timed the same way for comparison.

Prints texts/s, tokens/s and ms per batch (median of the runs). Nothing is asserted.
Usage: .venv/bin/python bench/embeddings.py [--docs N] [--runs N] [--batch-size N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from carmenta.knowledge.embeddings import LocalEmbedder  # noqa: E402

WORDS = (
    "the a of and to in is that for on with as by at from this it be are was were "
    "project meeting notes budget report customer garden river database search "
    "travel invoice schedule family recipe doctor appointment contract library "
    "private assistant document summary question answer weekly planning review "
    "morning evening important remember because however although therefore"
).split()


def _document(*, rng: random.Random, chars: int) -> str:
    parts: list[str] = []
    size = 0
    while size < chars:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20)))
        sentence = sentence.capitalize() + "."
        parts.append(sentence)
        size += len(sentence) + 1
    return " ".join(parts)[:chars]


def _time_batches(
    *, embedder: LocalEmbedder, texts: list[str], batch_size: int, runs: int
) -> tuple[float, float]:
    """Median seconds for all texts, and median seconds per batch."""
    embedder.embed(texts[:batch_size], batch_size=batch_size)  # warm caches
    totals: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        embedder.embed(texts, batch_size=batch_size)
        totals.append(time.perf_counter() - start)
    total = statistics.median(totals)
    batches = -(-len(texts) // batch_size)
    return total, total / batches


def _report(*, label: str, texts: list[str], tokens: int, total: float, per_batch: float) -> None:
    print(
        f"{label:<34} {len(texts) / total:8.1f} texts/s  {tokens / total:9.0f} tokens/s  "
        f"{per_batch * 1000:8.1f} ms/batch"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    embedder = LocalEmbedder()
    start = time.perf_counter()
    embedder.load()
    print(f"model load: {(time.perf_counter() - start) * 1000:.0f} ms")

    rng = random.Random(7)
    documents = [_document(rng=rng, chars=2000) for _ in range(args.docs)]
    doc_tokens = sum(embedder.count_tokens(text=d) for d in documents)
    print(
        f"{args.docs} documents of ~2 KB, {doc_tokens / args.docs:.0f} tokens each after "
        f"truncation; batch size {args.batch_size}; median of {args.runs} runs"
    )
    total, per_batch = _time_batches(
        embedder=embedder, texts=documents, batch_size=args.batch_size, runs=args.runs
    )
    _report(
        label="~2 KB documents (256 tokens)",
        texts=documents,
        tokens=doc_tokens,
        total=total,
        per_batch=per_batch,
    )

    sentences = [_document(rng=rng, chars=80) for _ in range(args.docs)]
    sentence_tokens = sum(embedder.count_tokens(text=s) for s in sentences)
    total, per_batch = _time_batches(
        embedder=embedder, texts=sentences, batch_size=args.batch_size, runs=args.runs
    )
    _report(
        label=f"short texts (~{sentence_tokens // args.docs} tokens)",
        texts=sentences,
        tokens=sentence_tokens,
        total=total,
        per_batch=per_batch,
    )


if __name__ == "__main__":
    main()
