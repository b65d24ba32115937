"""Research: long work on one question, done by a durable job, posted into the thread.

The person's question is committed with a reply row marked as research; a job
(`chat.research`) then breaks the question into facets, searches the knowledge base,
memories and files for each, and writes a report with its sources into the reply. It
records its progress in the reply (and the job's progress) after every step, so the
thread shows it across reloads; it survives a restart (the queue hands a job whose
worker died to another, and the work starts again from the question); and it can be
cancelled, keeping what it found so far. With a model configured, the model proposes
the facets, takes notes on each and writes the report; offline, the report is the
passages found, grouped by facet, with their sources.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta.chat import offline
from carmenta.chat.concierge import ContextSource, gather_sources
from carmenta.chat.llm import catalog
from carmenta.chat.llm.streaming import complete
from carmenta.chat.llm.types import ChatTurn, ModelCredentials, ModelError, ModelOption
from carmenta.conversations import service as conversations
from carmenta.conversations.models import MessageStatus
from carmenta.db import session_scope
from carmenta.jobs import service as jobs
from carmenta.knowledge.embeddings import Embedder
from carmenta.settings import Settings

logger = logging.getLogger(__name__)

RESEARCH_TASK = "chat.research"
# Its own queue, so a worker can be dedicated to long research if needed.
RESEARCH_QUEUE = "research"
MAX_FACETS = 5
SOURCES_PER_FACET = 4
_FACET_PROMPT = (
    "Break the question below into at most five short search queries that together "
    "cover it, one per line, nothing else."
)
_NOTES_PROMPT = (
    "You are researching a question for a person. From the passages of their own notes "
    "below, write brief notes on the facet given: facts only, each with the title of "
    "the passage it came from in brackets. Say 'Nothing found' if nothing is relevant."
)
_REPORT_PROMPT = (
    "Write a clear, well organised research report answering the question, from the "
    "notes below. Use Markdown headings and lists, cite the sources in brackets, and "
    "say plainly what the notes do not cover."
)


class ResearchRefused(conversations.MessageRefused):
    """The research cannot start; the text says why."""


@dataclass
class Finding:
    facet: str
    sources: list[ContextSource] = field(default_factory=list)
    notes: str = ""


async def start_research(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    conversation_id: uuid.UUID,
    question: str,
) -> tuple[conversations.MessageView, int]:
    """Store the question and its research reply, and queue the job (one transaction)."""
    question = question.strip()
    if len(question.split()) < 2:
        raise ResearchRefused("Give the research a question of a few words at least.")
    await conversations.add_user_message(
        session=session, owner_id=owner_id, conversation_id=conversation_id, content=question
    )
    reply = await conversations.start_reply(
        session=session,
        owner_id=owner_id,
        conversation_id=conversation_id,
        model=None,
        details={"research": {"question": question, "percent": 0, "step": "Queued"}},
    )
    conversation = await conversations.get_conversation(
        session=session, owner_id=owner_id, conversation_id=conversation_id
    )
    job_id = await jobs.enqueue(
        task_name=RESEARCH_TASK,
        task_kwargs={
            "owner_id": str(owner_id),
            "message_id": str(reply.id),
            "option_id": conversation.model,
        },
        owner_id=owner_id,
        session=session,
        lock=f"research:{reply.id}",
    )
    details = {"research": {"question": question, "percent": 0, "step": "Queued", "job_id": job_id}}
    await conversations.save_reply_progress(
        session=session, owner_id=owner_id, message_id=reply.id, content="", details=details
    )
    return reply, job_id


def facets_offline(question: str) -> list[str]:
    """The question itself, then its main subjects as separate searches."""
    words = [
        word
        for word in re.findall(r"[A-Za-z0-9][A-Za-z0-9'-]+", question)
        if word.lower() not in offline._STOPWORDS and len(word) > 2
    ]
    facets = [question]
    seen = {question.lower()}
    # Neighbouring subject words make better searches than single words.
    for index in range(0, len(words), 2):
        phrase = " ".join(words[index : index + 2])
        if phrase.lower() not in seen:
            seen.add(phrase.lower())
            facets.append(phrase)
    return facets[:MAX_FACETS]


def parse_facets(answer: str, question: str) -> list[str]:
    facets = [question]
    for line in answer.splitlines():
        line = re.sub(r"^[\s\-\*\d\.\)]+", "", line).strip().strip('"')
        if 2 < len(line) <= 200 and line.lower() not in {f.lower() for f in facets}:
            facets.append(line)
    return facets[: MAX_FACETS + 1]


def _passages(sources: list[ContextSource]) -> str:
    return "\n\n".join(f"[{source.title}]\n{source.text[:3000]}" for source in sources)


def offline_report(question: str, findings: list[Finding], *, cancelled: bool = False) -> str:
    lines = [
        f"## Research: {question}",
        "",
        "**Offline research** · no model is connected, so this report gathers the "
        "passages of your own notes that bear on each part of the question.",
    ]
    if cancelled:
        lines.append("\n*Cancelled: this is what was found before it stopped.*")
    all_sources: dict[str, ContextSource] = {}
    for finding in findings:
        lines.append(f"\n### {finding.facet}")
        if finding.notes:
            lines.append(finding.notes)
        elif not finding.sources:
            lines.append("Nothing in your notes on this.")
        for source in finding.sources:
            all_sources.setdefault(source.id, source)
    if all_sources:
        lines.append("\n### Sources")
        lines.extend(
            f"- [{source.title}]({source.href})"
            if source.href.startswith("/knowledge")
            else f"- {source.title} ({source.kind})"
            for source in all_sources.values()
        )
    return "\n".join(lines)


async def _quotes_for(facet: str, sources: list[ContextSource], embedder: Embedder) -> str:
    quotes = await offline._rank_quotes(query=facet, sources=sources, embedder=embedder)
    chosen = quotes[:3]
    return "\n".join(f"> {quote.sentence}\n> — *{quote.source.title}*\n" for quote in chosen)


async def run_research(
    *,
    settings: Settings,
    owner_id: uuid.UUID,
    message_id: uuid.UUID,
    embedder: Embedder,
    progress: Callable[[float, str], Awaitable[None]],
    model: tuple[ModelOption, ModelCredentials] | None,
) -> str:
    """Do the research for one reply and write the report into it; returns the report."""
    async with session_scope() as session:
        message = await conversations.get_message(
            session=session, owner_id=owner_id, message_id=message_id
        )
    if message is None or message.status != MessageStatus.streaming:
        return ""
    research: dict[str, Any] = dict(message.details.get("research") or {})
    question = str(research.get("question") or "")
    findings: list[Finding] = []

    async def record(percent: float, step: str, content: str = "") -> None:
        research.update({"percent": int(percent), "step": step})
        research["facets"] = [{"facet": f.facet, "found": len(f.sources)} for f in findings]
        async with session_scope() as session:
            still = await conversations.save_reply_progress(
                session=session,
                owner_id=owner_id,
                message_id=message_id,
                content=content,
                details={**message.details, "research": research},
            )
            await session.commit()
        if not still:
            raise asyncio.CancelledError("the reply was stopped")
        await progress(percent, step)

    try:
        await record(2, "Working out what to look for")
        if model is not None:
            try:
                answer = await complete(
                    option=model[0],
                    credentials=model[1],
                    system=_FACET_PROMPT,
                    turns=[ChatTurn(role="user", text=question)],
                    max_tokens=300,
                )
                facets = parse_facets(answer, question)
            except ModelError:
                facets = facets_offline(question)
        else:
            facets = facets_offline(question)

        for index, facet in enumerate(facets):
            await record(5 + 80 * index / len(facets), f"Searching: {facet}")
            async with session_scope() as session:
                _, memories, documents, files = await gather_sources(
                    session=session,
                    owner_id=owner_id,
                    query=facet,
                    embedder=embedder,
                    budget_tokens=settings.context_token_budget,
                    attachments=[],
                    parallel_search=True,
                )
            finding = Finding(
                facet=facet, sources=[*documents, *memories, *files][:SOURCES_PER_FACET]
            )
            if model is not None and finding.sources:
                try:
                    finding.notes = await complete(
                        option=model[0],
                        credentials=model[1],
                        system=_NOTES_PROMPT,
                        turns=[
                            ChatTurn(
                                role="user",
                                text=f"Facet: {facet}\n\nPassages:\n{_passages(finding.sources)}",
                            )
                        ],
                        max_tokens=800,
                    )
                except ModelError as error:
                    finding.notes = f"(Notes could not be taken: {error})"
            elif finding.sources:
                finding.notes = await _quotes_for(facet, finding.sources, embedder)
            findings.append(finding)
            await record(
                5 + 80 * (index + 1) / len(facets),
                f"Read {len(finding.sources)} sources on: {facet}",
                offline_report(question, findings),
            )

        await record(90, "Writing the report", offline_report(question, findings))
        report = offline_report(question, findings)
        if model is not None:
            notes = "\n\n".join(f"## {f.facet}\n{f.notes or 'Nothing found.'}" for f in findings)
            try:
                report = await complete(
                    option=model[0],
                    credentials=model[1],
                    system=_REPORT_PROMPT,
                    turns=[ChatTurn(role="user", text=f"Question: {question}\n\n{notes}")],
                    max_tokens=settings.reply_max_tokens,
                )
            except ModelError as error:
                report = (
                    offline_report(question, findings)
                    + f"\n\n*The model could not write the report: {error}*"
                )
        research.update({"percent": 100, "step": "Done"})
        async with session_scope() as session:
            await conversations.finish_reply(
                session=session,
                owner_id=owner_id,
                message_id=message_id,
                content=report,
                status=MessageStatus.complete,
                details={**message.details, "research": research, "context": _context(findings)},
            )
            await session.commit()
        return report
    except asyncio.CancelledError:
        research.update({"step": "Cancelled"})
        async with session_scope() as session:
            await conversations.finish_reply(
                session=session,
                owner_id=owner_id,
                message_id=message_id,
                content=offline_report(question, findings, cancelled=True),
                status=MessageStatus.stopped,
                details={**message.details, "research": research, "context": _context(findings)},
            )
            await session.commit()
        raise


def _context(findings: list[Finding]) -> dict[str, Any]:
    sources: dict[str, ContextSource] = {}
    for finding in findings:
        for source in finding.sources:
            sources.setdefault(source.id, source)
    summary: dict[str, int] = {}
    for source in sources.values():
        summary[source.kind] = summary.get(source.kind, 0) + 1
    return {"sources": [s.as_dict() for s in sources.values()], "summary": summary, "notices": []}


async def research_model(
    *, settings: Settings, owner_id: uuid.UUID, option_id: str | None
) -> tuple[ModelOption, ModelCredentials] | None:
    """The model the person chose for the conversation, else the operator's default."""
    if option_id == "offline":
        return None
    try:
        if option_id:
            async with session_scope() as session:
                return await catalog.credentials_for(
                    session=session, settings=settings, owner_id=owner_id, option_id=option_id
                )
        return await catalog.background_model(settings=settings)
    except ModelError:
        return None


def job_result(report: str) -> dict[str, Any]:
    return {"characters": len(report), "preview": json.dumps(report[:200])}
