"""Which models a person is offered: the operator's settings and their own API keys."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from contextlib import aclosing

import pytest
from sqlalchemy import text

from carmenta.chat.llm import ChatTurn, ModelError, TextDelta, catalog, stream_reply
from carmenta.connections import service as connections_service
from carmenta.connections.providers import registry
from carmenta.connections.providers.base import AccountIdentity
from carmenta.settings import Settings
from tests.integration.connections_support import RING_1, encryption_keys
from tests.model_servers import ModelServer, ModelServerState

MODEL_ENV = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_MODELS",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_MODELS",
    "DEFAULT_MODEL",
    "MODEL_CAPABILITIES",
    "OAUTH_ENDPOINT_OVERRIDES",
)


@pytest.fixture(scope="module")
def server() -> Iterator[ModelServer]:
    peer = ModelServer(ModelServerState()).start()
    yield peer
    peer.stop()


@pytest.fixture(autouse=True)
def clean(server, monkeypatch) -> Iterator[None]:
    for name in MODEL_ENV:
        monkeypatch.delenv(name, raising=False)
    server.state.replies.clear()
    server.state.requests.clear()
    server.state.models_status = None
    server.state.models_requests = 0
    server.state.models["openai"] = ["gpt-4.1-mini", "text-embedding-3-small", "llama3.1:8b"]
    server.state.anthropic_key = None
    server.state.openai_key = None
    catalog.forget_model_lists()
    with encryption_keys(RING_1):
        yield


def settings(**values) -> Settings:
    return Settings(_env_file=None, **values)


async def _user(session) -> uuid.UUID:
    user_id = uuid.uuid4()
    await session.execute(
        text(
            "insert into users (id, external_auth_id, auth_provider)"
            " values (:id, :external, 'builtin')"
        ),
        {"id": user_id, "external": f"catalog-{user_id}"},
    )
    return user_id


async def _connect(session, owner: uuid.UUID, provider_id: str, key: str, base_url=None):
    provider = registry.get_provider(provider_id, settings())
    return await connections_service.save_api_key_connection(
        session=session,
        owner_id=owner,
        provider=provider,
        identity=AccountIdentity(
            account_id=f"acct-{secrets.token_hex(4)}", label=f"key …{key[-4:]}"
        ),
        api_key=key,
        base_url=base_url,
    )


async def test_with_nothing_configured_no_model_is_offered(session):
    owner = await _user(session)
    configured = settings()
    assert (
        await catalog.available_models(session=session, settings=configured, owner_id=owner) == []
    )
    assert (
        await catalog.default_option(session=session, settings=configured, owner_id=owner) is None
    )
    assert await catalog.background_model(settings=configured) is None


async def test_an_anthropic_key_offers_the_default_models(session):
    owner = await _user(session)
    configured = settings(anthropic_api_key="sk-ant-operator")
    options = await catalog.available_models(session=session, settings=configured, owner_id=owner)
    assert [(option.id, option.label) for option in options] == [
        ("anthropic:claude-sonnet-5-5", "Claude Sonnet 5.5"),
        ("anthropic:claude-opus-5-5", "Claude Opus 5.5"),
        ("anthropic:claude-haiku-5-5", "Claude Haiku 5.5"),
    ]
    assert all(
        option.vision
        and option.tools
        and option.context_tokens == 200_000
        and option.source == "environment"
        and option.provider == "anthropic"
        for option in options
    )
    option, credentials = await catalog.credentials_for(
        session=session, settings=configured, owner_id=owner, option_id="anthropic:claude-opus-5-5"
    )
    assert option.model == "claude-opus-5-5"
    assert credentials.api_key == "sk-ant-operator" and credentials.base_url is None
    assert "sk-ant-operator" not in repr(credentials)


async def test_configured_lists_default_model_and_capability_overrides(session):
    owner = await _user(session)
    configured = settings(
        anthropic_api_key="sk-ant-operator",
        anthropic_models="claude-haiku-4-5",
        openai_api_key="sk-operator",
        openai_models="gpt-4.1-mini, my-finetune ,gpt-4.1-mini",
        default_model="openai:my-finetune",
        model_capabilities=json.dumps(
            {"my-*": {"tools": True, "context_tokens": 32000, "label": "House model"}}
        ),
    )
    options = await catalog.available_models(session=session, settings=configured, owner_id=owner)
    assert [option.id for option in options] == [
        "anthropic:claude-haiku-4-5",
        "openai:gpt-4.1-mini",
        "openai:my-finetune",
    ]
    house = options[2]
    assert (house.label, house.vision, house.tools, house.context_tokens) == (
        "House model",
        False,
        True,
        32000,
    )
    assert options[1].vision and options[1].context_tokens == 1_047_576
    default = await catalog.default_option(session=session, settings=configured, owner_id=owner)
    assert default is not None and default.id == "openai:my-finetune"
    chosen = await catalog.background_model(settings=configured)
    assert chosen is not None and chosen[0].id == "openai:my-finetune"
    assert chosen[1].api_key == "sk-operator"


async def test_an_openai_compatible_server_without_a_list_offers_what_it_serves(session, server):
    owner = await _user(session)
    configured = settings(openai_base_url=server.openai_base_url)
    first = await catalog.available_models(session=session, settings=configured, owner_id=owner)
    again = await catalog.available_models(session=session, settings=configured, owner_id=owner)
    # Embedding models are not chat models; the list is asked for once.
    assert [option.id for option in first] == ["openai:gpt-4.1-mini", "openai:llama3.1:8b"]
    assert again == first and server.state.models_requests == 1
    llama = first[1]
    assert (llama.model, llama.tools, llama.vision) == ("llama3.1:8b", True, False)
    # A local server without a key: the stream works through the same path.
    option, credentials = await catalog.credentials_for(
        session=session, settings=configured, owner_id=owner, option_id="openai:llama3.1:8b"
    )
    async with aclosing(
        stream_reply(
            option=option,
            credentials=credentials,
            system="",
            max_tokens=50,
            turns=[ChatTurn("user", "hello local")],
            tools=[],
        )
    ) as events:
        text_out = "".join([event.text async for event in events if isinstance(event, TextDelta)])
    assert text_out == "Echo: hello local"
    assert server.state.requests[-1].body["model"] == "llama3.1:8b"


async def test_a_persons_own_keys_offer_models_only_to_them(session, server):
    owner, other = await _user(session), await _user(session)
    anthropic_key = "sk-ant-api03-" + secrets.token_urlsafe(16)
    openai_key = "sk-own-" + secrets.token_urlsafe(16)
    server.state.anthropic_key, server.state.openai_key = anthropic_key, openai_key
    anthropic_view = await _connect(session, owner, "anthropic", anthropic_key)
    openai_view = await _connect(
        session, owner, "openai_compatible", openai_key, server.openai_base_url
    )
    configured = settings(
        anthropic_models="claude-sonnet-5-5",
        oauth_endpoint_overrides=json.dumps({"anthropic": {"api_base": server.anthropic_base_url}}),
    )
    options = await catalog.available_models(session=session, settings=configured, owner_id=owner)
    assert [(option.id, option.source) for option in options] == [
        (f"conn:{anthropic_view.id}:claude-sonnet-5-5", "connection"),
        (f"conn:{openai_view.id}:gpt-4.1-mini", "connection"),
        (f"conn:{openai_view.id}:llama3.1:8b", "connection"),
    ]
    assert options[0].label == f"Claude Sonnet 5.5 · key …{anthropic_key[-4:]}"

    for option in (options[0], options[2]):
        chosen, credentials = await catalog.credentials_for(
            session=session, settings=configured, owner_id=owner, option_id=option.id
        )
        async with aclosing(
            stream_reply(
                option=chosen,
                credentials=credentials,
                system="",
                max_tokens=50,
                turns=[ChatTurn("user", "on my key")],
                tools=[],
            )
        ) as events:
            reply = "".join([event.text async for event in events if isinstance(event, TextDelta)])
        assert reply == "Echo: on my key"

    # Someone else neither sees these options nor can use them by id.
    assert (
        await catalog.available_models(session=session, settings=configured, owner_id=other) == []
    )
    for option in options:
        with pytest.raises(ModelError) as refused:
            await catalog.credentials_for(
                session=session, settings=configured, owner_id=other, option_id=option.id
            )
        assert refused.value.kind == "unavailable"
        assert anthropic_key not in str(refused.value) and openai_key not in str(refused.value)


async def test_a_connection_whose_model_list_fails_offers_nothing(session, server):
    owner = await _user(session)
    await _connect(session, owner, "openai_compatible", "sk-own-key-1", server.openai_base_url)
    server.state.models_status = 500
    options = await catalog.available_models(session=session, settings=settings(), owner_id=owner)
    assert options == []


@pytest.mark.parametrize(
    "option_id",
    [
        "anthropic:claude-sonnet-5-5",  # no operator key
        "openai:gpt-4.1",
        "conn:not-a-uuid:gpt-4.1",
        f"conn:{uuid.uuid4()}:gpt-4.1",
        f"conn:{uuid.uuid4()}:",
        "something-else",
    ],
)
async def test_an_unknown_option_is_refused_in_plain_words(session, option_id):
    owner = await _user(session)
    with pytest.raises(ModelError) as refused:
        await catalog.credentials_for(
            session=session, settings=settings(), owner_id=owner, option_id=option_id
        )
    assert refused.value.kind == "unavailable"
    assert "is not available. Choose another model." in str(refused.value)
