"""The file store for these settings: Supabase Storage when configured, else local disk."""

from __future__ import annotations

import logging
import secrets
import stat
import threading
import time
from pathlib import Path

from carmenta import key_files
from carmenta.errors import ConfigurationError
from carmenta.files.storage.base import (
    NotRenderable,
    ObjectNotFound,
    StorageBackend,
    StorageError,
    Transform,
    TransformError,
)
from carmenta.settings import Settings

__all__ = [
    "NotRenderable",
    "ObjectNotFound",
    "StorageBackend",
    "StorageError",
    "Transform",
    "TransformError",
    "get_storage",
    "load_url_secret",
]

logger = logging.getLogger(__name__)

URL_SECRET_FILE = "storage_url_secret"  # noqa: S105 - a file name
_SECRET_BYTES = 32
# How long to wait for a secret file another process is still writing.
_PARTIAL_FILE_WAIT_SECONDS = 2.0

_stores: dict[tuple[object, ...], StorageBackend] = {}
_stores_lock = threading.Lock()


def get_storage(settings: Settings) -> StorageBackend:
    """The store these settings describe; one instance per distinct configuration."""
    identity = _identity(settings)
    with _stores_lock:
        store = _stores.get(identity)
        if store is None:
            store = _build(settings)
            _stores[identity] = store
        return store


def _identity(settings: Settings) -> tuple[object, ...]:
    if settings.uses_supabase_storage:
        return (
            "supabase",
            settings.supabase_url,
            settings.supabase_service_role_key,
            settings.supabase_bucket,
        )
    return (
        "local",
        str(settings.local_storage_dir),
        str(settings.keys_dir),
        settings.storage_url_secret,
        settings.max_image_pixels,
    )


def _build(settings: Settings) -> StorageBackend:
    if settings.uses_supabase_storage:
        from carmenta.files.storage.supabase import SupabaseStore

        assert settings.supabase_url and settings.supabase_service_role_key
        return SupabaseStore(
            url=settings.supabase_url,
            service_role_key=settings.supabase_service_role_key,
            bucket=settings.supabase_bucket,
        )
    from carmenta.files.storage.local import LocalStore

    return LocalStore(
        settings.local_storage_dir,
        secret=load_url_secret(configured=settings.storage_url_secret, keys_dir=settings.keys_dir),
        max_image_pixels=settings.max_image_pixels,
    )


def load_url_secret(*, configured: str | None, keys_dir: Path) -> bytes:
    """The local store's URL signing secret: STORAGE_URL_SECRET, or one kept in `keys_dir`."""
    if configured is not None and configured.strip():
        value = configured.strip().encode()
        if len(value) < _SECRET_BYTES:
            raise ConfigurationError(
                "STORAGE_URL_SECRET must be at least 32 characters "
                "(e.g. the output of `openssl rand -hex 32`)"
            )
        return value
    path = keys_dir / URL_SECRET_FILE
    if path.exists():
        _warn_if_readable_by_others(path)
        return _read_secret_file(path)
    return _create_secret_file(keys_dir, path)


def _decode(text: str) -> bytes | None:
    value = text.strip()
    if len(value) != _SECRET_BYTES * 2:
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


def _read_secret_file(path: Path) -> bytes:
    deadline = time.monotonic() + _PARTIAL_FILE_WAIT_SECONDS
    while True:
        secret = _decode(path.read_text(encoding="ascii", errors="replace"))
        if secret is not None:
            return secret
        # A file another process has only just created may still be half-written.
        just_written = time.time() - path.stat().st_mtime < _PARTIAL_FILE_WAIT_SECONDS
        if not just_written or time.monotonic() >= deadline:
            raise ConfigurationError(
                f"The storage URL secret {path} is damaged: delete it to make a new one "
                "(links already handed out stop working)"
            )
        time.sleep(0.05)


def _warn_if_readable_by_others(path: Path) -> None:
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "The storage URL secret %s can be read by other users; run `chmod 600 %s`",
            path,
            path,
        )


def _create_secret_file(keys_dir: Path, path: Path) -> bytes:
    secret = secrets.token_bytes(_SECRET_BYTES)
    content = (secret.hex() + "\n").encode("ascii")
    if not key_files.write_once(path, content):
        return _read_secret_file(path)
    logger.info("Created a new storage URL secret at %s", path)
    return secret
