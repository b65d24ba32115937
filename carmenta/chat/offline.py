"""The offline assistant: answers from the person's own notes when no model is set up.

It cannot write prose, so it does the next most useful thing: it finds the sentences in
the knowledge base, memories and files that best answer the message (ranked by meaning
with the local embedding model, and by shared words), quotes them with where they come
from, and says plainly that it is offline. Its reply streams like a model's.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta.chat.concierge import ContextSource, ReplyPlan
from carmenta.chat.llm.types import StreamFinished, TextDelta
from carmenta.knowledge.embeddings import Embedder
from carmenta.knowledge.search import clean_query
from carmenta.memory import service as memory
from carmenta.memory.extraction import extract_explicit

LABEL = "**Offline assistant** · no model is connected, so I answer from your own notes."
# Cosine similarity (MiniLM) above which a sentence is on the subject of the question.
SENTENCE_RELEVANCE = 0.30
MEMORY_RELEVANCE = 0.30
# A document whose title is this close to the question is about it as a whole: when none
# of its sentences says so on its own ("What's in my garden notes?"), it opens the answer.
TITLE_RELEVANCE = 0.50
OPENING_SENTENCES = 3
MAX_QUOTES_PER_SOURCE = 3
MAX_SOURCES = 4
MAX_CANDIDATES = 120
MAX_SENTENCE_CHARS = 400

_GREETING = re.compile(
    r"^\s*(hi|hello|hey|good (morning|afternoon|evening)|thanks|thank you|yo)\b[\s!.,]*$",
    re.I,
)
_HELP = re.compile(r"^\s*(help|what can you do|who are you|how do you work)\b", re.I)
_ABOUT_ME = re.compile(
    r"\bwhat (do you|else do you) (know|remember) about me\b|\bwhat have you remembered\b",
    re.I,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_STOPWORDS = frozenset(
    "a an and are as at be but by can could did do does for from had has have how i if in "
    "into is it its me my of on or our she he they so than that the their them then there "
    "these this to was we were what when where which who why will with would you your "
    "about tell know remember please".split()
)


@dataclass(frozen=True)
class Quote:
    source: ContextSource
    sentence: str
    score: float


def _stem(word: str) -> str:
    """A plural as its singular, roughly ("gardens", "berries", "boxes"): enough for a
    question and a note to share a word."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith("es") and word[-3] in "sxz":
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _words(value: str) -> set[str]:
    return {_stem(word) for word in _WORD.findall(value.lower()) if word not in _STOPWORDS}


def _sentences(value: str) -> list[str]:
    pieces = []
    for piece in _SENTENCE_END.split(value):
        piece = piece.strip(" \t-*#>")
        if len(piece) < 3 or piece.startswith("|---"):
            continue
        pieces.append(piece[:MAX_SENTENCE_CHARS])
    return pieces


def _source_label(source: ContextSource) -> str:
    title = source.title.replace("[", "(").replace("]", ")")
    if source.kind == "file":
        return f"**{title}** (attached file)"
    if source.kind == "profile":
        return f"your profile, **[{title}]({source.href})**"
    return f"**[{title}]({source.href})**"


async def _file_sources(
    *, session: AsyncSession, owner_id: uuid.UUID, query: str, exclude: set[str]
) -> list[ContextSource]:
    """Files whose extracted text matches the question, beyond those attached."""
    cleaned = clean_query(query)
    if not cleaned:
        return []
    rows = (
        await session.execute(
            text(
                "with q as (select websearch_to_tsquery('english', :query) as tsq)"
                " select f.id, f.original_name, f.extracted_text"
                " from files f, q where f.owner_id = :owner and f.extracted_text is not null"
                " and to_tsvector('english', f.extracted_text) @@ q.tsq"
                " order by ts_rank_cd(to_tsvector('english', f.extracted_text), q.tsq) desc"
                " limit 3"
            ),
            {"owner": owner_id, "query": cleaned},
        )
    ).all()
    return [
        ContextSource(
            kind="file",
            id=str(row.id),
            title=row.original_name,
            href="/files",
            text=row.extracted_text[:20_000],
        )
        for row in rows
        if str(row.id) not in exclude
    ]


async def _rank_quotes(
    *, query: str, sources: list[ContextSource], embedder: Embedder
) -> list[Quote]:
    candidates: list[tuple[ContextSource, str]] = []
    for source in sources:
        for sentence in _sentences(source.text):
            candidates.append((source, sentence))
            if len(candidates) >= MAX_CANDIDATES:
                break
    if not candidates:
        return []
    titled = [source for source in sources if source.kind == "document" and source.title]
    vectors = await embedder.embed_async(
        [query, *[sentence for _, sentence in candidates], *[source.title for source in titled]]
    )
    similarities = vectors[1:] @ vectors[0]
    sentence_similarities = similarities[: len(candidates)]
    title_similarities = similarities[len(candidates) :]
    query_words = _words(query)
    quotes = []
    for (source, sentence), similarity in zip(candidates, sentence_similarities, strict=True):
        shared = len(query_words & _words(sentence))
        score = float(similarity) + 0.08 * min(shared, 4)
        if similarity >= SENTENCE_RELEVANCE or shared >= 2:
            quotes.append(Quote(source=source, sentence=sentence, score=score))
    quoted = {quote.source.id for quote in quotes}
    for source, similarity in zip(titled, title_similarities, strict=True):
        shared = len(query_words & _words(source.title))
        if source.id in quoted or (similarity < TITLE_RELEVANCE and not shared):
            continue
        # Named by the question, silent sentence by sentence: how it begins.
        opening = " ".join(_sentences(source.text)[:OPENING_SENTENCES])
        if opening:
            score = max(float(similarity), SENTENCE_RELEVANCE) + 0.08 * min(shared, 4)
            quotes.append(Quote(source=source, sentence=opening, score=score))
    quotes.sort(key=lambda quote: quote.score, reverse=True)
    return quotes


async def _relevant_memories(
    *, query: str, memories: list[ContextSource], embedder: Embedder
) -> list[ContextSource]:
    if not memories:
        return []
    vectors = await embedder.embed_async([query, *[item.text for item in memories]])
    similarities = vectors[1:] @ vectors[0]
    query_words = _words(query)
    ranked = sorted(
        (
            (float(similarity), item)
            for similarity, item in zip(similarities, memories, strict=True)
            if similarity >= MEMORY_RELEVANCE or query_words & _words(item.text)
        ),
        key=lambda pair: pair[0],
        reverse=True,
    )
    return [item for _, item in ranked[:5]]


def _capabilities() -> str:
    return (
        "Offline, I can:\n\n"
        "- **find things in your notes**: ask a question and I quote the passages of your "
        "knowledge base, memories and files that answer it, with links to them;\n"
        "- **remember** what you tell me: say “remember that …”, “my name is …” or "
        "“I prefer …”;\n"
        "- **read attached files**: attach a PDF, document or text file and ask about it.\n\n"
        "For written answers, add a model: set an Anthropic or OpenAI-compatible key "
        "in the server's settings, or add your own key on the Connections page."
    )


async def compose_offline_reply(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    plan: ReplyPlan,
    embedder: Embedder,
) -> str:
    """The offline answer, as Markdown."""
    query = " ".join(plan.query.split())
    parts = [LABEL, ""]
    remembered = extract_explicit(plan.query)
    if remembered:
        parts.append("Got it. I'll remember:")
        parts.extend(f"- {item.content}" for item in remembered)
        parts.append("\nYou can see and edit what I remember on the [Memory](/memory) page.")
        return "\n".join(parts)
    if not query and not plan.attachments:
        parts.append(_capabilities())
        return "\n".join(parts)
    if query and (_GREETING.match(query) or _HELP.match(query)):
        parts.append("Hello! " + _capabilities())
        return "\n".join(parts)
    if _ABOUT_ME.search(query):
        items = await memory.list_memories(session=session, owner_id=owner_id)
        if not items:
            parts.append(
                "I don't remember anything about you yet. Tell me “remember that …” and I will."
            )
        else:
            parts.append("Here is what I remember about you:")
            parts.extend(f"- {item.content}" for item in items[:20])
            parts.append("\nEdit or delete any of these on the [Memory](/memory) page.")
        return "\n".join(parts)

    attached = [source for source in plan.sources if source.kind == "file"]
    documents = [source for source in plan.sources if source.kind in ("document", "profile")]
    memories = [source for source in plan.sources if source.kind == "memory"]
    other_files = await _file_sources(
        session=session,
        owner_id=owner_id,
        query=query,
        exclude={source.id for source in attached},
    )
    ask = query or "the attached files"
    quotes = await _rank_quotes(
        query=ask, sources=[*attached, *documents, *other_files], embedder=embedder
    )
    relevant_memories = await _relevant_memories(query=ask, memories=memories, embedder=embedder)

    grouped: dict[str, list[Quote]] = {}
    for quote in quotes:
        bucket = grouped.setdefault(quote.source.id, [])
        if len(bucket) < MAX_QUOTES_PER_SOURCE:
            bucket.append(quote)
    chosen = sorted(grouped.values(), key=lambda bucket: bucket[0].score, reverse=True)
    chosen = chosen[:MAX_SOURCES]

    if attached and not quotes:
        # Nothing matched the question: show how each attached file begins.
        for source in attached:
            opening = " ".join(_sentences(source.text)[:3])
            if opening:
                chosen.append([Quote(source=source, sentence=opening, score=0.0)])

    if not chosen and not relevant_memories:
        parts.append(
            f"I looked through your knowledge base, memories and files and found nothing "
            f"about “{query[:120]}”."
        )
        parts.append(
            "\nAdd what you know on the [Knowledge](/knowledge) page and ask again, "
            "or connect a model for general questions."
        )
        return "\n".join(parts)

    parts.append(f"Here is what I found about “{ask[:120]}”:")
    for bucket in chosen:
        parts.append(f"\nFrom {_source_label(bucket[0].source)}:")
        parts.extend(f"> {quote.sentence}\n>" for quote in bucket)
        if parts[-1].endswith("\n>"):
            parts[-1] = parts[-1][: -len("\n>")]
    if relevant_memories:
        parts.append("\nFrom what you told me before:")
        parts.extend(f"- {item.text}" for item in relevant_memories)
    return "\n".join(parts)


async def stream_text(
    reply: str, *, words_per_second: float
) -> AsyncIterator[TextDelta | StreamFinished]:
    """Yield the reply a few words at a time, paced like a model."""
    tokens = re.findall(r"\S+\s*|\s+", reply)
    delay = 1.0 / words_per_second
    for index in range(0, len(tokens), 2):
        yield TextDelta(text="".join(tokens[index : index + 2]))
        await asyncio.sleep(delay * 2)
    yield StreamFinished(stop_reason="end_turn", input_tokens=None, output_tokens=None)


def cosine(left: np.ndarray, right: np.ndarray) -> float:
    return float(left @ right)
