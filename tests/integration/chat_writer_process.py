"""A process that writes one reply, for the test that kills it mid-stream.

Run as `python -m tests.integration.chat_writer_process OWNER CONVERSATION MODEL_URL`,
with DATABASE_URL set: it sends "Go" in the conversation with the app's chat engine
and the model at MODEL_URL (an OpenAI-compatible API), prints the reply's id, and
waits for the reply to end. The test kills it with SIGKILL before that.
"""

from __future__ import annotations

import asyncio
import sys
import uuid

from pydantic import SecretStr

from carmenta.chat.engine import ChatEngine
from carmenta.chat.service import CatalogModels
from carmenta.knowledge.embeddings import get_local_embedder
from carmenta.settings import get_settings


async def main(owner: str, conversation: str, model_url: str) -> None:
    settings = get_settings().model_copy(
        update={
            "openai_api_key": SecretStr("sk-local-test"),
            "openai_base_url": model_url,
            "openai_models": "gpt-4.1-mini",
            "default_model": "openai:gpt-4.1-mini",
        }
    )
    engine = ChatEngine(
        models=CatalogModels(settings), tools=None, settings=settings, embedder=get_local_embedder()
    )
    _, reply = await engine.send(
        owner_id=uuid.UUID(owner), conversation_id=uuid.UUID(conversation), content="Go"
    )
    print(reply.id, flush=True)
    live = engine.live(reply.id)
    if live is not None and live.task is not None:
        await live.task


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
