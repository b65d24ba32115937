"""The model clients: one per loop and key, and those of the server's own keys opened at
start, so that the first reply does not pay for opening one."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from carmenta.chat.llm import clients
from carmenta.chat.llm.catalog import open_environment_clients
from carmenta.chat.llm.types import ModelCredentials
from carmenta.settings import Settings


@pytest.fixture(autouse=True)
def no_cached_clients():
    clients._clients.clear()
    yield
    clients._clients.clear()


async def test_the_servers_own_keys_have_their_clients_opened_and_reused(tmp_path):
    settings = Settings(
        data_dir=tmp_path,
        anthropic_api_key=SecretStr("sk-ant-local"),
        anthropic_base_url="http://127.0.0.1:9/anthropic",
        openai_api_key=SecretStr("sk-local"),
        openai_base_url="http://127.0.0.1:9/v1",
    )
    assert open_environment_clients(settings) == 2
    assert clients.cached_client_count() == 2
    anthropic_client = clients.client_for(
        "anthropic",
        ModelCredentials(api_key="sk-ant-local", base_url="http://127.0.0.1:9/anthropic"),
    )
    openai_client = clients.client_for(
        "openai", ModelCredentials(api_key="sk-local", base_url="http://127.0.0.1:9/v1")
    )
    # The replies use the clients opened at start: no new one was made.
    assert clients.cached_client_count() == 2
    assert type(anthropic_client).__name__ == "AsyncAnthropic"
    assert type(openai_client).__name__ == "AsyncOpenAI"


async def test_without_keys_nothing_is_opened(tmp_path):
    settings = Settings(
        data_dir=tmp_path, anthropic_api_key=None, openai_api_key=None, openai_base_url=None
    )
    assert open_environment_clients(settings) == 0
    assert clients.cached_client_count() == 0
