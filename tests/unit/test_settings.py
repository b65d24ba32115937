"""Configuration: parsing, validation and the production safety rule."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from carmenta.settings import Settings


def make(**values) -> Settings:
    return Settings(_env_file=None, **values)


def test_defaults_run_locally_on_the_embedded_database():
    settings = make()
    assert settings.uses_embedded_database
    assert settings.port == 3000
    assert settings.bind_host == "127.0.0.1"
    assert settings.app_url == "http://localhost:3000"
    assert settings.embedded_postgres_dir == settings.data_dir / "postgres"


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u:p@db.example.com:5432/carmenta",
        "postgresql+psycopg://u@h/db",
        "postgresql://postgres:@/carmenta?host=/tmp/sock",
    ],
)
def test_postgres_urls_are_accepted(url):
    assert make(database_url=url).database_url == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:p@h/db", "must be a PostgreSQL URL"),
        ("not a url", "must be a PostgreSQL URL"),
        ("postgresql://u:p@host:5432", "no database name"),
    ],
)
def test_malformed_database_urls_are_refused_with_a_reason(url, message):
    with pytest.raises(ValidationError, match=message):
        make(database_url=url)


def test_blank_database_url_means_embedded():
    assert make(database_url="  ").uses_embedded_database


def test_port_out_of_range_is_refused():
    with pytest.raises(ValidationError):
        make(port=70000)


def test_public_url_must_be_http():
    with pytest.raises(ValidationError, match="PUBLIC_URL"):
        make(public_url="ftp://x")
    assert make(public_url="https://c.example.com/").app_url == "https://c.example.com"


def test_production_on_development_defaults_names_everything_missing():
    problems = make(carmenta_env="production").production_problems()
    text = "\n".join(problems)
    for name in (
        "DATABASE_URL",
        "ENCRYPTION_KEYS",
        "CLERK_PUBLISHABLE_KEY",
        "SESSION_SIGNING_KEY",
        "PUBLIC_URL",
    ):
        assert name in text


def test_production_with_everything_set_has_no_problems():
    settings = make(
        carmenta_env="production",
        database_url="postgresql://u:p@db:5432/carmenta",
        encryption_keys="k1:" + "A" * 44,
        session_signing_key="-----BEGIN PRIVATE KEY-----",
        public_url="https://carmenta.example.com",
    )
    assert settings.production_problems() == []
    assert settings.bind_host == "0.0.0.0"


def test_production_requires_https_public_url():
    settings = make(
        carmenta_env="production",
        database_url="postgresql://u:p@db:5432/carmenta",
        encryption_keys="x",
        clerk_publishable_key="pk",
        clerk_secret_key="sk",
        clerk_webhook_secret="whsec_x",
        public_url="http://carmenta.example.com",
    )
    assert settings.production_problems() == ["PUBLIC_URL must use https:// in production"]


@pytest.mark.parametrize(
    "url", ["redis://localhost:6379/0", "rediss://u:p@r.example.com:6380", "unix:///run/r.sock"]
)
def test_redis_urls_are_accepted_and_mean_shared_state(url):
    settings = make(redis_url=url)
    assert settings.redis_url == url
    assert settings.shares_state


def test_a_redis_url_of_another_kind_is_refused_with_a_reason():
    with pytest.raises(ValidationError, match="REDIS_URL must look like redis://"):
        make(redis_url="http://localhost:6379")
    assert make(redis_url="  ").redis_url is None


def test_several_web_workers_need_redis():
    with pytest.raises(ValidationError, match="WEB_WORKERS above 1 needs REDIS_URL"):
        make(web_workers=3)
    assert make(web_workers=3, redis_url="redis://localhost:6379/0").web_workers == 3


def test_shared_state_names_the_secrets_each_instance_would_otherwise_generate():
    assert make().unshared_secrets() == []
    missing = "\n".join(make(redis_url="redis://r:6379").unshared_secrets())
    for name in ("SESSION_SIGNING_KEY", "ENCRYPTION_KEYS", "STORAGE_URL_SECRET"):
        assert name in missing
    shared = make(
        redis_url="redis://r:6379",
        clerk_publishable_key="pk",
        clerk_secret_key="sk",
        encryption_keys="k1:" + "A" * 44,
        supabase_url="https://x.supabase.co",
        supabase_service_role_key="service-role",
    )
    assert shared.unshared_secrets() == []


def test_production_with_redis_and_the_local_store_needs_a_shared_url_secret():
    values = dict(
        carmenta_env="production",
        database_url="postgresql://u:p@db:5432/carmenta",
        encryption_keys="k1:" + "A" * 44,
        session_signing_key="-----BEGIN PRIVATE KEY-----",
        public_url="https://carmenta.example.com",
        redis_url="redis://r:6379/0",
    )
    problems = make(**values).production_problems()
    assert len(problems) == 1 and "STORAGE_URL_SECRET" in problems[0]
    assert make(**values, storage_url_secret="s" * 32).production_problems() == []
