"""Which tools a user may use, and running one for them.

A tool is offered when the user has a usable connection of its provider (connected,
not waiting to be reconnected, holding a scope the tool needs). With several
accounts of one provider the tool takes an optional `account` argument, one of the
accounts' labels; without it the provider's default account is used.

`run_tool` never raises for a provider's problems: every failure is a
ToolOutcome(ok=False) whose text says what happened in words for the person. Tokens
stay inside the request headers: never in an outcome, a log line or an error.
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import httpx
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta.chat.tools import github, gmail, google_calendar, notion, slack
from carmenta.chat.tools.arguments import ArgumentError, validate_arguments
from carmenta.chat.tools.base import (
    ServiceTool,
    ToolContext,
    ToolFailure,
    ToolOutcome,
    one_line,
    shared_http_client,
    truncate,
)
from carmenta.connections import service as connections
from carmenta.connections.models import ConnectionStatus, CredentialType
from carmenta.connections.providers import registry as providers
from carmenta.settings import Settings

logger = logging.getLogger(__name__)

ALL_TOOLS: tuple[ServiceTool, ...] = (
    *slack.TOOLS,
    *gmail.TOOLS,
    *google_calendar.TOOLS,
    *notion.TOOLS,
    *github.TOOLS,
)
_BY_NAME = {tool.name: tool for tool in ALL_TOOLS}


def find_tool(name: str) -> ServiceTool | None:
    """The declaration of a tool by name (not personalised to any user)."""
    return _BY_NAME.get(name)


def _usable(view: connections.ConnectionView) -> bool:
    return (
        view.status == ConnectionStatus.connected.value
        and view.credential_type == CredentialType.oauth.value
    )


def _allows(tool: ServiceTool, view: connections.ConnectionView) -> bool:
    # A connection that recorded no scopes is taken to hold what was asked for.
    return not tool.scopes or not view.scopes or any(scope in view.scopes for scope in tool.scopes)


def _choices(views: Sequence[connections.ConnectionView]) -> dict[str, connections.ConnectionView]:
    """Each account under the label a person knows it by (its id added when two share one)."""
    counts: dict[str, int] = {}
    for view in views:
        counts[view.account_label] = counts.get(view.account_label, 0) + 1
    return {
        (
            view.account_label
            if counts[view.account_label] == 1
            else f"{view.account_label} [{view.account_id}]"
        ): view
        for view in views
    }


def _default(views: Sequence[connections.ConnectionView]) -> connections.ConnectionView:
    return next((view for view in views if view.is_default), views[0])


def _personalised(tool: ServiceTool, accounts: Sequence[connections.ConnectionView]) -> ServiceTool:
    if len(accounts) < 2:
        return tool
    choices = _choices(accounts)
    default = _default(accounts)
    default_label = next(label for label, view in choices.items() if view is default)
    parameters = copy.deepcopy(dict(tool.parameters))
    parameters["properties"] = {
        **parameters.get("properties", {}),
        "account": {
            "type": "string",
            "enum": list(choices),
            "description": f"Which of the user's accounts to use (default: {default_label})",
        },
    }
    return replace(tool, parameters=parameters)


def _by_provider(
    views: Sequence[connections.ConnectionView],
) -> dict[str, list[connections.ConnectionView]]:
    grouped: dict[str, list[connections.ConnectionView]] = {}
    for view in views:
        grouped.setdefault(view.provider, []).append(view)
    return grouped


async def tools_for_user(*, session: AsyncSession, owner_id: uuid.UUID) -> list[ServiceTool]:
    """The tools this user's connections allow, personalised to their accounts."""
    grouped = _by_provider(await connections.list_connections(session=session, owner_id=owner_id))
    offered = []
    for tool in ALL_TOOLS:
        accounts = [
            view
            for view in grouped.get(tool.provider_id, [])
            if _usable(view) and _allows(tool, view)
        ]
        if accounts:
            offered.append(_personalised(tool, accounts))
    return offered


def _failed(message: str, *, summary: str | None = None, data: dict | None = None) -> ToolOutcome:
    return ToolOutcome(ok=False, content=message, summary=summary or message, data=data)


def _scrubbed(outcome: ToolOutcome, secret: str, budget: int) -> ToolOutcome:
    """The outcome within budget, with the credential cut out should a provider echo it."""
    content, summary = outcome.content, outcome.summary
    if secret and (secret in content or secret in summary):
        content = content.replace(secret, "[redacted]")
        summary = summary.replace(secret, "[redacted]")
    return replace(outcome, content=truncate(content, budget), summary=one_line(summary, 200))


async def run_tool(
    *,
    session: AsyncSession,
    settings: Settings,
    owner_id: uuid.UUID,
    name: str,
    arguments: Mapping[str, Any] | None,
    http: httpx.AsyncClient | None = None,
) -> ToolOutcome:
    """Run the tool `name` with the model's `arguments` as this user.

    Never raises for bad arguments, missing connections or provider failures; those
    are ToolOutcome(ok=False) with the reason. `http` replaces the shared client.
    """
    tool = _BY_NAME.get(name)
    if tool is None:
        return _failed(f"There is no tool called '{one_line(name, 60)}'.")
    try:
        provider = providers.get_provider(tool.provider_id, settings)
    except LookupError:
        return _failed(f"{tool.title} is not available on this Carmenta.")
    service_name = provider.name
    views = [
        view
        for view in await connections.list_connections(session=session, owner_id=owner_id)
        if view.provider == tool.provider_id
    ]
    if not views:
        return _failed(
            f"You haven't connected {service_name}; connect it on the Connections page first."
        )
    accounts = [view for view in views if _usable(view) and _allows(tool, view)]
    if not accounts:
        if any(_usable(view) for view in views):
            return _failed(
                f"Your {service_name} connection does not allow this ({tool.title.lower()}); "
                f"reconnect {service_name} to grant it."
            )
        return _failed(
            f"Your {service_name} connection needs to be reconnected on the Connections page."
        )
    personal = _personalised(tool, accounts)
    try:
        checked = validate_arguments(personal.parameters, arguments)
    except ArgumentError as error:
        return _failed(str(error), summary=f"{tool.title}: {error}")
    label = checked.pop("account", None)
    if label is not None:
        view = _choices(accounts)[label]
    else:
        view = _default(views)
        if view not in accounts:
            others = ", ".join(choice for choice in _choices(accounts))
            return _failed(
                f"Your default {service_name} account ({view.account_label}) needs to be "
                f"reconnected on the Connections page"
                + (f"; or name another account: {others}." if len(views) > 1 else ".")
            )
    reconnect = (
        f"Your {service_name} connection ({view.account_label}) needs to be reconnected "
        "on the Connections page."
    )
    try:
        token = await connections.get_access_token(
            owner_id=owner_id,
            provider_id=tool.provider_id,
            account_id=view.account_id,
            settings=settings,
        )
    except connections.ReauthorizationRequired:
        return _failed(reconnect)
    except connections.ConnectionNotFound:
        return _failed(f"You haven't connected {service_name}; connect it on the Connections page.")
    except connections.TemporaryProviderError:
        return _failed(f"{service_name} isn't answering right now; try again in a few minutes.")
    except connections.RefreshRejected:
        return _failed(
            f"{service_name} refused to renew access to your account; the administrator "
            f"should check Carmenta's {service_name} app settings."
        )
    context = ToolContext(
        provider=provider,
        token=token.token,
        account_id=view.account_id,
        account_label=view.account_label,
        http=http or shared_http_client(),
        budget=settings.chat_tool_result_chars,
        extra=token.extra,
    )
    try:
        outcome = await tool.run(context, checked)
    except ToolFailure as failure:
        outcome = _failed(failure.message, data=failure.data)
    except Exception as error:
        # The type only: an exception's text may quote a URL or a provider's answer.
        logger.warning("chat tool %s failed unexpectedly (%s)", name, type(error).__name__)
        outcome = _failed(f"Something went wrong using {service_name}; try again later.")
    if len(accounts) > 1:
        outcome = replace(outcome, summary=f"{outcome.summary} ({view.account_label})")
    logger.info("chat tool %s for user %s: %s", name, owner_id, "done" if outcome.ok else "failed")
    return _scrubbed(outcome, token.token, settings.chat_tool_result_chars)
