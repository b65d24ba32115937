"""All configuration, read once from the environment or `.env`.

Nothing here touches the network or the database: importing this module is free,
and `get_settings()` only parses and validates values.
"""

from __future__ import annotations

import functools
import json
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Environment(StrEnum):
    development = "development"
    production = "production"


class JobWorkerMode(StrEnum):
    # "inline": a worker runs inside the web process (the embedded default).
    # "external": jobs run only in `python -m carmenta worker` processes.
    inline = "inline"
    external = "external"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


# Offered when ANTHROPIC_API_KEY (or a person's Anthropic key) is set and
# ANTHROPIC_MODELS is not; OpenAI's likewise for OPENAI_API_KEY without a base URL.
DEFAULT_ANTHROPIC_MODELS = ("claude-sonnet-5-5", "claude-opus-5-5", "claude-haiku-5-5")
DEFAULT_OPENAI_MODELS = ("gpt-4.1", "gpt-4.1-mini")


def _comma_list(value: str) -> list[str]:
    names: list[str] = []
    for name in value.split(","):
        if name.strip() and name.strip() not in names:
            names.append(name.strip())
    return names


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=PROJECT_ROOT / ".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        # A variable set to nothing (a blank prompt on a hosting dashboard) means unset.
        env_ignore_empty=True,
    )

    carmenta_env: Environment = Environment.development

    # Where the app keeps its own data: embedded database, local file store, keys.
    data_dir: Path = PROJECT_ROOT / ".data"

    # Unset: an embedded PostgreSQL is started under DATA_DIR/postgres.
    database_url: str | None = None

    host: str | None = None
    port: int = Field(default=3000, ge=1, le=65535)
    # The address people use to reach the app; OAuth redirect URIs are built from it.
    public_url: str | None = None

    job_worker: JobWorkerMode = JobWorkerMode.inline
    job_worker_concurrency: int = Field(default=4, ge=1, le=64)

    log_level: str = "info"
    # text: readable lines for a terminal; json: one object per line for a log service.
    log_format: LogFormat = LogFormat.text
    # Bearer token of GET /metrics (Prometheus); unset: the endpoint does not exist.
    metrics_token: SecretStr | None = None

    # Several instances behind one load balancer share the page state through Redis
    # (redis://, rediss:// or unix://). Unset: each process keeps its own.
    redis_url: str | None = None
    # Web server processes in this instance; more than one needs REDIS_URL.
    web_workers: int = Field(default=1, ge=1, le=64)

    # Built-in accounts: the PEM RSA private key that signs session tokens. Unset in
    # development: a key is generated once and kept in DATA_DIR/keys.
    session_signing_key: str | None = None
    session_ttl_hours: int = Field(default=14 * 24, ge=1, le=90 * 24)
    # Comma-separated emails of built-in accounts that are administrators.
    admin_emails: str = ""

    # Clerk: setting both keys switches sign-in to Clerk.
    clerk_publishable_key: str | None = None
    clerk_secret_key: str | None = None
    # Networkless verification key (PEM). Unset: the instance's JWKS, cached by key id.
    clerk_jwt_key: str | None = None
    # The Frontend API URL tokens must be issued by; derived from the publishable key.
    clerk_issuer: str | None = None
    clerk_jwks_url: str | None = None
    # Comma-separated origins allowed in a token's `azp`; defaults to PUBLIC_URL.
    clerk_authorized_parties: str | None = None
    clerk_webhook_secret: str | None = None
    # Clerk's Backend API, used to delete a user who deletes their account here.
    clerk_api_url: str = "https://api.clerk.com"

    # Key ring for service credentials (AES-256-GCM); production refuses to start without.
    encryption_keys: str | None = None

    # Service connections (OAuth apps registered by the operator). A provider shows as
    # connectable when its client id and secret are set.
    slack_client_id: str | None = None
    slack_client_secret: str | None = None
    slack_signing_secret: str | None = None
    google_client_id: str | None = None
    google_client_secret: str | None = None
    notion_client_id: str | None = None
    notion_client_secret: str | None = None
    github_client_id: str | None = None
    github_client_secret: str | None = None
    github_webhook_secret: str | None = None
    dropbox_client_id: str | None = None
    dropbox_client_secret: str | None = None
    # Any OpenID Connect provider, discovered from its issuer (a company's own server).
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_name: str = "Single sign-on account"
    oidc_scopes: str = "openid email profile offline_access"
    # JSON object: provider id -> {"authorize_url", "token_url", "revoke_url", "api_base"},
    # for self-hosted instances (GitHub Enterprise, say) and local test servers.
    oauth_endpoint_overrides: str | None = None

    # Files. Supabase Storage when both are set, else the local store in DATA_DIR/storage.
    supabase_url: str | None = None
    supabase_service_role_key: str | None = None
    supabase_bucket: str = "carmenta-files"
    # Local store: the secret its signed URLs are made with (generated in DATA_DIR/keys
    # when unset; set it when several app instances share one store).
    storage_url_secret: str | None = None
    signed_url_ttl_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    max_document_mb: int = Field(default=50, ge=1)
    max_image_mb: int = Field(default=25, ge=1)
    max_audio_mb: int = Field(default=25, ge=1)
    storage_quota_mb: int = Field(default=2048, ge=1)
    # A person's data export is kept this long in the store, then deleted.
    export_retention_hours: int = Field(default=72, ge=1, le=30 * 24)
    # Images larger than this many pixels are refused (decompression bombs).
    max_image_pixels: int = Field(default=60_000_000, ge=1_000_000)
    # Speech-to-text for audio files: an OpenAI-compatible /audio/transcriptions endpoint.
    speech_api_url: str | None = None
    speech_api_key: str | None = None
    speech_model: str = "whisper-1"

    # Embeddings: an OpenAI-compatible /embeddings endpoint; unset = the local CPU model
    # (all-MiniLM-L6-v2, whose weights ship in a package; no download at run time).
    embeddings_api_url: str | None = None
    embeddings_api_key: str | None = None
    embeddings_model: str = "text-embedding-3-small"

    # Chat models. Anthropic with the operator's key (billed to the operator);
    # ANTHROPIC_MODELS is a comma list (unset: a current default list, offered only
    # when the key is set). Users may also connect their own keys on Connections.
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    anthropic_models: str | None = None
    # Any OpenAI-compatible API: OpenAI itself, or OPENAI_BASE_URL for OpenRouter,
    # Ollama, vLLM... (a local server may need no key). OPENAI_MODELS unset: a default
    # list for OpenAI itself, the server's own /models list for any other base URL.
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_models: str | None = None
    # The option picked when a person has not chosen one, e.g. "anthropic:claude-sonnet-4-5".
    default_model: str | None = None
    # JSON object: model name (or glob, "llama3*") -> any of {"vision": bool, "tools":
    # bool, "context_tokens": int, "label": str}, over the defaults of known families.
    model_capabilities: str | None = None

    # Chat tools: the most characters one tool result hands the model.
    chat_tool_result_chars: int = Field(default=8000, ge=500, le=200_000)

    # Chat: how much of the model's context the Concierge fills with the person's
    # profile, memories, documents and attached files (in tokens), and the reply's length.
    context_token_budget: int = Field(default=6000, ge=500, le=200_000)
    reply_max_tokens: int = Field(default=4096, ge=64, le=64_000)
    # The offline assistant streams its answer at this many words per second.
    offline_words_per_second: float = Field(default=60.0, gt=0, le=10_000)

    @field_validator("database_url")
    @classmethod
    def _database_url_is_postgres(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        parts = urlsplit(value)
        scheme = parts.scheme.split("+", 1)[0]
        if scheme not in ("postgres", "postgresql"):
            raise ValueError(
                "DATABASE_URL must be a PostgreSQL URL such as "
                "postgresql://user:password@host:5432/dbname "
                f"(got a URL with scheme {parts.scheme or 'none'!r})"
            )
        if not parts.path.strip("/") and "dbname=" not in parts.query:
            raise ValueError(
                "DATABASE_URL has no database name: add it after the host, "
                "e.g. postgresql://user:password@host:5432/carmenta"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_is_redis(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        scheme = urlsplit(value.strip()).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                "REDIS_URL must look like redis://host:6379/0 (or rediss://, unix://) "
                f"(got a URL with scheme {scheme or 'none'!r})"
            )
        return value.strip()

    @model_validator(mode="after")
    def _several_workers_need_redis(self) -> Settings:
        if self.web_workers > 1 and self.redis_url is None:
            raise ValueError(
                "WEB_WORKERS above 1 needs REDIS_URL: without it each process keeps its "
                "own page state and a person's events would land on processes that "
                "do not know them"
            )
        return self

    @field_validator("anthropic_api_key", "openai_api_key", "metrics_token", mode="before")
    @classmethod
    def _blank_key_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("anthropic_base_url", "openai_base_url")
    @classmethod
    def _model_base_url_is_http(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                "a model API base URL must look like https://api.example.com/v1 "
                f"(got a URL with scheme {parts.scheme or 'none'!r})"
            )
        return value.strip().rstrip("/")

    @field_validator("anthropic_models", "openai_models", "default_model")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value.strip() if value and value.strip() else None

    @field_validator("model_capabilities")
    @classmethod
    def _capabilities_are_a_json_object(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            parsed = json.loads(value)
        except ValueError as error:
            raise ValueError(
                f"MODEL_CAPABILITIES is not valid JSON ({error.msg} at {error.pos})"
            ) from None
        allowed = {"vision": bool, "tools": bool, "context_tokens": int, "label": str}
        if not isinstance(parsed, dict):
            raise ValueError(
                'MODEL_CAPABILITIES must be a JSON object like {"llama3*": {"tools": true}}'
            )
        for name, values in parsed.items():
            if not isinstance(values, dict):
                raise ValueError(f"MODEL_CAPABILITIES[{name!r}] must be an object")
            for key, item in values.items():
                expected = allowed.get(key)
                if expected is None:
                    raise ValueError(
                        f"MODEL_CAPABILITIES[{name!r}] has an unknown key {key!r}; "
                        f"allowed: {sorted(allowed)}"
                    )
                # bool is an int in Python; a context size of `true` is a mistake.
                if not isinstance(item, expected) or (expected is int and isinstance(item, bool)):
                    raise ValueError(
                        f"MODEL_CAPABILITIES[{name!r}][{key!r}] must be a {expected.__name__}"
                    )
            if "context_tokens" in values and values["context_tokens"] < 1:
                raise ValueError(f"MODEL_CAPABILITIES[{name!r}]['context_tokens'] must be positive")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url_is_http(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("PUBLIC_URL must look like https://carmenta.example.com")
        return value.strip().rstrip("/")

    @property
    def is_production(self) -> bool:
        return self.carmenta_env is Environment.production

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def uses_clerk(self) -> bool:
        return bool(self.clerk_publishable_key and self.clerk_secret_key)

    @property
    def admin_email_set(self) -> frozenset[str]:
        return frozenset(
            email.strip().lower() for email in self.admin_emails.split(",") if email.strip()
        )

    @property
    def clerk_authorized_party_list(self) -> list[str]:
        if self.clerk_authorized_parties:
            return [
                party.strip().rstrip("/")
                for party in self.clerk_authorized_parties.split(",")
                if party.strip()
            ]
        return [self.app_url]

    @property
    def uses_supabase_storage(self) -> bool:
        return bool(self.supabase_url and self.supabase_service_role_key)

    @property
    def local_storage_dir(self) -> Path:
        return self.data_dir / "storage"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def bind_host(self) -> str:
        # Locally the app listens on loopback only; a production host must be reachable.
        if self.host:
            return self.host
        return "0.0.0.0" if self.is_production else "127.0.0.1"  # noqa: S104

    @property
    def app_url(self) -> str:
        return self.public_url or f"http://localhost:{self.port}"

    @property
    def anthropic_model_names(self) -> list[str]:
        """The operator's Anthropic models; also offered on a person's own Anthropic key."""
        if self.anthropic_models:
            return _comma_list(self.anthropic_models)
        return list(DEFAULT_ANTHROPIC_MODELS)

    @property
    def openai_model_names(self) -> list[str] | None:
        """The configured OpenAI-compatible models; None: ask the server's /models."""
        if self.openai_models:
            return _comma_list(self.openai_models)
        return None if self.openai_base_url else list(DEFAULT_OPENAI_MODELS)

    @property
    def uses_environment_openai(self) -> bool:
        # A local server (Ollama, vLLM) may need no key, only its address.
        return self.openai_api_key is not None or self.openai_base_url is not None

    @property
    def shares_state(self) -> bool:
        """Several instances (or web workers) serve the same people."""
        return self.redis_url is not None

    def unshared_secrets(self) -> list[str]:
        """Secrets that, left unset, each instance would generate for itself.

        With REDIS_URL set, people move between instances from one event to the next:
        a session signed by one instance must verify on the others, a file URL one
        signs must open on another, and credentials one encrypts must decrypt anywhere.
        """
        if not self.shares_state:
            return []
        missing: list[str] = []
        if not self.uses_clerk and not self.session_signing_key:
            missing.append("SESSION_SIGNING_KEY (sessions signed by one instance)")
        if not self.encryption_keys:
            missing.append("ENCRYPTION_KEYS (service credentials encrypted by one instance)")
        if not self.uses_supabase_storage and not self.storage_url_secret:
            missing.append("STORAGE_URL_SECRET (file links signed by one instance)")
        return missing

    @property
    def embedded_postgres_dir(self) -> Path:
        return self.data_dir / "postgres"

    def production_problems(self) -> list[str]:
        """What makes this configuration unsafe to serve real users, in plain words."""
        problems: list[str] = []
        if self.database_url is None:
            problems.append(
                "DATABASE_URL is not set: production must use a managed PostgreSQL, "
                "not the embedded development database"
            )
        if not self.encryption_keys:
            problems.append("ENCRYPTION_KEYS is not set: service credentials cannot be encrypted")
        if not self.uses_clerk and not self.session_signing_key:
            problems.append(
                "no authentication keys: set CLERK_PUBLISHABLE_KEY and CLERK_SECRET_KEY, "
                "or SESSION_SIGNING_KEY for built-in accounts"
            )
        if self.uses_clerk and not self.clerk_webhook_secret:
            problems.append(
                "CLERK_WEBHOOK_SECRET is not set: deleted Clerk users would keep their data"
            )
        if self.public_url is None:
            problems.append(
                "PUBLIC_URL is not set: links and OAuth redirects need the public address"
            )
        elif not self.public_url.startswith("https://"):
            problems.append("PUBLIC_URL must use https:// in production")
        if self.shares_state and not self.uses_supabase_storage and not self.storage_url_secret:
            problems.append(
                "REDIS_URL is set (several instances) but STORAGE_URL_SECRET is not: a file "
                "link signed by one instance would not open on another"
            )
        return problems


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    """Forget the parsed settings (used after the environment changes)."""
    get_settings.cache_clear()
