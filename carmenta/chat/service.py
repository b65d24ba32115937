"""The chat as the app uses it: one engine per process, wired to the model catalog and
to the person's connected services."""

from __future__ import annotations

import uuid
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta.chat.engine import ChatEngine, ToolOffer, ToolRun
from carmenta.chat.llm import catalog
from carmenta.chat.llm.types import ModelCredentials, ModelOption, ToolSpec
from carmenta.chat.tools import registry as tool_registry
from carmenta.settings import Settings, get_settings


class CatalogModels:
    """Models from the server's configuration and the person's own API keys."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings

    @property
    def settings(self) -> Settings:
        return self._settings or get_settings()

    async def options(self, *, session: AsyncSession, owner_id: uuid.UUID) -> list[ModelOption]:
        return await catalog.available_models(
            session=session, settings=self.settings, owner_id=owner_id
        )

    async def credentials(
        self, *, session: AsyncSession, owner_id: uuid.UUID, option: ModelOption
    ) -> ModelCredentials:
        _, credentials = await catalog.credentials_for(
            session=session, settings=self.settings, owner_id=owner_id, option_id=option.id
        )
        return credentials


class ConnectedServices:
    """The person's Slack, Google, Notion and GitHub connections as tools."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings

    @property
    def settings(self) -> Settings:
        return self._settings or get_settings()

    async def offers(self, *, session: AsyncSession, owner_id: uuid.UUID) -> list[ToolOffer]:
        tools = await tool_registry.tools_for_user(session=session, owner_id=owner_id)
        return [
            ToolOffer(
                spec=ToolSpec(
                    name=tool.name,
                    description=tool.description,
                    parameters=dict(tool.parameters),
                ),
                title=tool.title,
                writes=tool.writes,
            )
            for tool in tools
        ]

    def describe(self, *, name: str, arguments: dict[str, Any]) -> str:
        tool = tool_registry.find_tool(name)
        return tool.describe_call(arguments) if tool is not None else name

    async def run(
        self, *, session: AsyncSession, owner_id: uuid.UUID, name: str, arguments: dict[str, Any]
    ) -> ToolRun:
        outcome = await tool_registry.run_tool(
            session=session,
            settings=self.settings,
            owner_id=owner_id,
            name=name,
            arguments=arguments,
        )
        return ToolRun(ok=outcome.ok, content=outcome.content, summary=outcome.summary)


_engine: ChatEngine | None = None


def get_engine() -> ChatEngine:
    """This process's chat engine (created on first use, never at import)."""
    global _engine
    if _engine is None:
        _engine = ChatEngine(models=CatalogModels(), tools=ConnectedServices())
    return _engine


async def model_options(*, session: AsyncSession, owner_id: uuid.UUID) -> list[ModelOption]:
    return await CatalogModels().options(session=session, owner_id=owner_id)
