"""API-key connections: checked for form, checked with the provider, then saved encrypted.

Against local servers shaped like Anthropic's GET /v1/models (x-api-key and
anthropic-version) and an OpenAI-compatible GET {base_url}/models (Bearer), each
accepting exactly one key.
"""

from __future__ import annotations

import pytest

from carmenta import db
from carmenta.connections import api_keys, service
from carmenta.connections.providers import registry
from carmenta.settings import Settings, get_settings
from tests.integration import oauth_support
from tests.integration.oauth_support import connection_rows, sign_up, stored_credentials
from tests.local_server import free_port

oauth_env = oauth_support.oauth_env
oidc_peer = oauth_support.oidc_peer
provider_peer = oauth_support.provider_peer


async def _add(user, provider_id: str, api_key: str, base_url: str | None = None):
    settings = get_settings()
    provider = registry.get_provider(provider_id, settings)
    async with db.session_scope() as session:
        return await api_keys.add_api_key(
            session=session,
            owner_id=user.user_id,
            provider=provider,
            api_key=api_key,
            base_url=base_url,
            settings=settings,
        )


async def _refused(user, provider_id: str, api_key: str, base_url: str | None = None) -> str:
    with pytest.raises(api_keys.ApiKeyRejected) as refused:
        await _add(user, provider_id, api_key, base_url)
    assert api_key not in str(refused.value) or not api_key.strip()
    assert await connection_rows(user.user_id) == []
    return str(refused.value)


async def test_a_good_anthropic_key_is_checked_and_saved_encrypted(oauth_env):
    key = oauth_env.state.anthropic_key
    user = await sign_up()
    view = await _add(user, "anthropic", f"  {key}\n")  # pasted with whitespace around
    assert view.account_label == f"Anthropic key …{key[-4:]}"
    assert view.credential_type == "api_key" and view.status == "connected"
    [row] = await connection_rows(user.user_id)
    assert key not in str(row)
    assert (await stored_credentials(row["id"]))["api_key"] == key
    token = await service.get_access_token(owner_id=user.user_id, provider_id="anthropic")
    assert token.token == key


async def test_a_key_anthropic_does_not_accept_is_refused_and_nothing_stored(oauth_env):
    user = await sign_up()
    message = await _refused(user, "anthropic", "sk-ant-api03-" + "x" * 40)
    assert message == "The provider did not accept this key."


async def test_a_good_openai_compatible_key_is_saved_with_its_base_url(oauth_env):
    peer = oauth_env
    key = peer.state.openai_key
    user = await sign_up()
    base_url = f"{peer.url}/openai/v1/"
    view = await _add(user, "openai_compatible", key, base_url)
    assert view.account_label == f"127.0.0.1:{peer.port} key …{key[-4:]}"
    token = await service.get_access_token(owner_id=user.user_id, provider_id="openai_compatible")
    assert token.token == key
    assert token.extra["base_url"] == f"{peer.url}/openai/v1"


async def test_a_wrong_openai_compatible_key_is_refused(oauth_env):
    user = await sign_up()
    message = await _refused(
        user, "openai_compatible", "sk-wrong-key-123456", f"{oauth_env.url}/openai/v1"
    )
    assert message == "The provider did not accept this key."


async def test_an_unreachable_base_url_gets_a_clear_message(oauth_env):
    user = await sign_up()
    port = free_port()  # nothing listens there
    message = await _refused(
        user, "openai_compatible", "sk-anything-1234", f"http://127.0.0.1:{port}/v1"
    )
    assert message == (
        f"Could not reach 127.0.0.1:{port}: the connection was refused or the host name "
        "was not found."
    )


async def test_a_base_url_without_a_model_list_is_named(oauth_env):
    user = await sign_up()
    message = await _refused(
        user, "openai_compatible", oauth_env.state.openai_key, f"{oauth_env.url}/nothing-here"
    )
    assert "has no model list at this address" in message


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("", "Enter the API's base URL"),
        ("ftp://models.example/v1", "must start with https://"),
        ("file:///etc/passwd", "must start with https://"),
        ("https://user:secret@models.example/v1", "must not contain a user name or password"),
        ("https://models.example/v1?key=1", "must not end with a query"),
        ("https:///v1", "has no host name"),
        ("http://169.254.169.254/latest", "cannot be used"),
        ("https://models.example:99999/v1", "not a valid address"),
    ],
)
async def test_unusable_base_urls_are_refused_before_any_request(oauth_env, base_url, expected):
    user = await sign_up()
    message = await _refused(user, "openai_compatible", oauth_env.state.openai_key, base_url)
    assert expected in message


def test_production_refuses_plain_http_and_private_addresses():
    production = Settings(carmenta_env="production", _env_file=None)
    development = Settings(carmenta_env="development", _env_file=None)
    check = api_keys.base_url_problem
    assert "https://" in check("http://models.example/v1", settings=production)
    for internal in (
        "https://127.0.0.1:8080/v1",
        "https://10.0.0.5/v1",
        "https://[::1]/v1",
        "https://localhost/v1",
        "https://ollama.local/v1",
    ):
        assert "private network" in check(internal, settings=production), internal
        assert check(internal.replace("https", "http"), settings=development) is None
    assert check("https://api.openai.com/v1", settings=production) is None


@pytest.mark.parametrize(
    ("provider_id", "api_key", "expected"),
    [
        ("anthropic", "", "Paste the API key."),
        ("anthropic", "   ", "Paste the API key."),
        ("anthropic", "sk-ant-abc def", "no spaces or line breaks"),
        ("anthropic", "sk-ant-" + "a" * 600, "longer than an API key"),
        ("anthropic", "sk-ant-clé", "plain letters"),
        ("anthropic", "sk-proj-1234567890", "Anthropic keys start with sk-ant-"),
        ("openai_compatible", "sk-\u200babc", "plain letters"),
    ],
)
async def test_format_problems_are_named_as_you_type_and_refused(
    oauth_env, provider_id, api_key, expected
):
    provider = registry.get_provider(provider_id, get_settings())
    problem = api_keys.api_key_format_problem(provider, api_key)
    assert problem is not None and expected in problem
    user = await sign_up()
    assert expected in await _refused(user, provider_id, api_key, f"{oauth_env.url}/openai/v1")
    # Nothing was sent anywhere for a key refused on its form.


def test_a_well_formed_key_has_no_format_problem():
    settings = Settings(_env_file=None)
    anthropic = registry.get_provider("anthropic", settings)
    compatible = registry.get_provider("openai_compatible", settings)
    assert api_keys.api_key_format_problem(anthropic, "sk-ant-api03-abcdEFGH_1234-xyz") is None
    assert api_keys.api_key_format_problem(compatible, "anything-goes-1234") is None


async def test_an_oauth_provider_takes_no_api_key(oauth_env):
    user = await sign_up()
    message = await _refused(user, "slack", "xoxp-123456789")
    assert "own sign-in page" in message
