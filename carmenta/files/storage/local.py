"""The embedded file store: objects on local disk, served by the app through signed URLs.

Layout under the root folder:

- `{key}`: the object itself;
- `.meta/{key}.json`: its content type, written by `put_file` (the route needs it
  to serve the object, and signed URLs do not carry it);
- `.variants/{key}/{cache key}.{ext}`: transformed variants, dropped with the object.

Keys are made of segments of letters, digits, `.`, `_` and `-`; a segment may not
start with a dot, which keeps keys out of the store's own folders.

A signed URL is `{base_path}/{key}?exp=…&sig=…` plus the transformation and
`download` parameters, where `sig` is an HMAC-SHA256 over the key, the expiry, the
canonical transformation and the download name: changing any of them voids it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import math
import os
import re
import shutil
import stat
import tempfile
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

from carmenta.files.storage.base import ObjectNotFound, StorageError, Transform
from carmenta.files.storage.transform import (
    DEFAULT_MAX_PIXELS,
    FORMAT_CONTENT_TYPES,
    FORMAT_EXTENSIONS,
    output_format,
    render_variant,
)

CHUNK_SIZE = 64 * 1024
DEFAULT_CONTENT_TYPE = "application/octet-stream"
_META_DIR = ".meta"
_VARIANTS_DIR = ".variants"
_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
_SIGNATURE_CONTEXT = "carmenta.local-store.v1"
_MAX_KEY_LENGTH = 1024
_CONTENT_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*"
    r"([ \t]*;[ \t]*[A-Za-z0-9!#$&^_.+-]+=(\"[^\"\\\x00-\x1f\x7f]*\"|[A-Za-z0-9!#$&^_.+-]+))*"
)
_EXTENSION_CONTENT_TYPES = {
    f".{extension}": FORMAT_CONTENT_TYPES[name] for name, extension in FORMAT_EXTENSIONS.items()
}


class SignatureInvalid(StorageError):
    """The URL was not signed by this store, or was changed after signing."""


class SignatureExpired(StorageError):
    """The URL was signed by this store but its lifetime is over."""


@dataclass(frozen=True)
class SignedAccess:
    """What a verified signed URL grants."""

    key: str
    expires_at: int
    transform: Transform | None
    download_name: str | None


@dataclass(frozen=True)
class LocalObject:
    """A file ready to serve: an original or a rendered variant."""

    path: Path
    content_type: str
    stat: os.stat_result


def validate_key(key: str) -> str:
    """The key unchanged when it is safe to use as a relative path; else ValueError."""
    if not key or len(key) > _MAX_KEY_LENGTH:
        raise ValueError("a storage key must be 1 to 1024 characters long")
    segments = key.split("/")
    if not all(_SEGMENT.fullmatch(segment) for segment in segments):
        raise ValueError(
            "a storage key is made of /-separated segments of letters, digits, '.', '_' "
            "and '-', none of them empty or starting with a dot"
        )
    return key


class _RenderCoordination:
    """Per event loop: one render per variant at a time, and a bounded number overall."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # Rendering is CPU-bound: queue work instead of starting unbounded threads.
        self.slots = asyncio.Semaphore(max(1, os.cpu_count() or 1))

    def lock_for(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[name] = lock
        return lock


class LocalStore:
    name = "local"

    def __init__(
        self,
        root: Path,
        *,
        secret: bytes,
        base_path: str = "/files/object",
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        if len(secret) < 32:
            raise ValueError("the signing secret must be at least 32 bytes")
        self.root = Path(root)
        self.base_path = base_path.rstrip("/")
        self.max_image_pixels = max_image_pixels
        self._secret = secret
        # asyncio locks belong to one event loop; the store may be shared by several.
        self._coordination: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, _RenderCoordination
        ] = weakref.WeakKeyDictionary()

    # Paths -------------------------------------------------------------------------

    def object_path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def _meta_path(self, key: str) -> Path:
        return self.root / _META_DIR / f"{validate_key(key)}.json"

    def _variants_dir(self, key: str) -> Path:
        return self.root / _VARIANTS_DIR / validate_key(key)

    def variant_path(self, *, key: str, transform: Transform, content_type: str) -> Path:
        extension = FORMAT_EXTENSIONS[output_format(content_type=content_type, transform=transform)]
        return self._variants_dir(key) / f"{transform.cache_key()}.{extension}"

    # StorageBackend ----------------------------------------------------------------

    async def put_file(self, *, key: str, path: Path, content_type: str) -> None:
        target = self.object_path(key)
        await asyncio.to_thread(self._put_sync, key, target, Path(path), content_type)

    def _put_sync(self, key: str, target: Path, source: Path, content_type: str) -> None:
        _atomic_copy(source, target)
        meta = json.dumps({"content_type": _clean_content_type(content_type)}).encode()
        _atomic_write(self._meta_path(key), meta)
        # A replaced object must not keep the previous object's variants.
        shutil.rmtree(self._variants_dir(key), ignore_errors=True)

    async def read(self, *, key: str) -> AsyncIterator[bytes]:
        path = self.object_path(key)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound("no such object") from None
        try:
            while chunk := await asyncio.to_thread(handle.read, CHUNK_SIZE):
                yield chunk
        finally:
            handle.close()

    async def download_to(self, *, key: str, path: Path) -> None:
        source = self.object_path(key)
        try:
            await asyncio.to_thread(_atomic_copy, source, Path(path))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            if not await self.exists(key=key):
                raise ObjectNotFound("no such object") from None
            raise

    async def exists(self, *, key: str) -> bool:
        return await asyncio.to_thread(self.object_path(key).is_file)

    async def delete_prefix(self, *, prefix: str) -> None:
        """Delete the object named `prefix` and every object below `prefix/`.

        A prefix matches whole segments: `u/f1` never deletes `u/f10`.
        """
        prefix = validate_key(prefix.strip("/"))
        await asyncio.to_thread(self._delete_sync, prefix)

    def _delete_sync(self, prefix: str) -> None:
        for base in (self.root, self.root / _META_DIR, self.root / _VARIANTS_DIR):
            target = base / prefix
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    target.unlink()
            _prune_empty_parents(target.parent, stop=base)
        meta = self._meta_path(prefix)
        with contextlib.suppress(FileNotFoundError):
            meta.unlink()
        _prune_empty_parents(meta.parent, stop=self.root / _META_DIR)

    async def file_folders(self) -> AsyncIterator[tuple[str, datetime]]:
        for user_dir in await asyncio.to_thread(_subfolders, self.root):
            for file_dir in await asyncio.to_thread(_subfolders, user_dir):
                changed = datetime.fromtimestamp(file_dir.stat().st_mtime, UTC)
                yield f"{user_dir.name}/{file_dir.name}", changed

    async def signed_url(
        self,
        *,
        key: str,
        expires_in: int,
        transform: Transform | None = None,
        download_name: str | None = None,
    ) -> str:
        validate_key(key)
        if expires_in < 1:
            raise ValueError("expires_in must be at least one second")
        if transform is not None:
            # Fail here rather than hand out a URL that can only answer 400.
            Transform.from_query(transform.to_query())
        expires_at = _rounded_expiry(time.time(), expires_in)
        query: dict[str, str] = {"exp": str(expires_at)}
        query["sig"] = self._signature(key, expires_at, transform, download_name)
        if transform is not None:
            query.update(sorted(transform.to_query().items()))
        if download_name:
            query["download"] = download_name
        return f"{self.base_path}/{key}?{urlencode(query)}"

    # Serving -----------------------------------------------------------------------

    def verify(self, *, key: str, query: Mapping[str, str], now: float) -> SignedAccess:
        """Check a signed URL's parameters.

        Raises TransformError (parameters out of range, checked first as Supabase
        does), then SignatureInvalid or SignatureExpired.
        """
        validate_key(key)
        transform = Transform.from_query(query)
        download_name = query.get("download") or None
        expiry, signature = query.get("exp", ""), query.get("sig", "")
        if not expiry.isdigit() or len(expiry) > 12 or not signature:
            raise SignatureInvalid("the link is not valid")
        expires_at = int(expiry)
        expected = self._signature(key, expires_at, transform, download_name)
        if not hmac.compare_digest(expected, signature):
            raise SignatureInvalid("the link is not valid")
        if now >= expires_at:
            raise SignatureExpired("the link has expired")
        return SignedAccess(
            key=key, expires_at=expires_at, transform=transform, download_name=download_name
        )

    async def stat(self, *, key: str) -> LocalObject:
        """The original object and its content type. Raises ObjectNotFound."""
        return await asyncio.to_thread(self._stat_sync, key)

    def _stat_sync(self, key: str) -> LocalObject:
        path = self.object_path(key)
        try:
            info = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound("no such object") from None
        if not stat.S_ISREG(info.st_mode):
            raise ObjectNotFound("no such object")
        try:
            meta = json.loads(self._meta_path(key).read_bytes())
            content_type = str(meta.get("content_type") or DEFAULT_CONTENT_TYPE)
        except (OSError, ValueError, AttributeError):
            content_type = DEFAULT_CONTENT_TYPE
        return LocalObject(path=path, content_type=content_type, stat=info)

    async def variant(self, *, key: str, transform: Transform) -> LocalObject:
        """The transformed object, rendered on the first request and then cached.

        Raises ObjectNotFound, or NotRenderable for objects that are not images/PDFs.
        """
        original = await self.stat(key=key)
        path = self.variant_path(key=key, transform=transform, content_type=original.content_type)
        content_type = _EXTENSION_CONTENT_TYPES[path.suffix]
        cached = await asyncio.to_thread(_stat_or_none, path)
        if cached is not None:
            return LocalObject(path=path, content_type=content_type, stat=cached)
        coordination = self._coordination.setdefault(
            asyncio.get_running_loop(), _RenderCoordination()
        )
        async with coordination.lock_for(str(path)):
            cached = await asyncio.to_thread(_stat_or_none, path)
            if cached is None:
                async with coordination.slots:
                    cached = await asyncio.to_thread(self._render_sync, original, transform, path)
        return LocalObject(path=path, content_type=content_type, stat=cached)

    def _render_sync(
        self, original: LocalObject, transform: Transform, path: Path
    ) -> os.stat_result:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".render-")
        os.close(descriptor)
        try:
            render_variant(
                source=original.path,
                content_type=original.content_type,
                transform=transform,
                dest=Path(temporary),
                max_pixels=self.max_image_pixels,
            )
            # Concurrent renders of one variant (other processes) each replace it whole.
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        if not original.path.exists():
            # The object was deleted while its variant was being rendered.
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            raise ObjectNotFound("no such object")
        return path.stat()

    def _signature(
        self,
        key: str,
        expires_at: int,
        transform: Transform | None,
        download_name: str | None,
    ) -> str:
        parameters = urlencode(sorted(transform.to_query().items())) if transform else ""
        message = "\n".join(
            [_SIGNATURE_CONTEXT, key, str(expires_at), parameters, download_name or ""]
        )
        return hmac.new(self._secret, message.encode(), hashlib.sha256).hexdigest()


def _rounded_expiry(now: float, expires_in: int) -> int:
    # Rounded up so that links made moments apart are identical and browsers can
    # reuse what they cached; never shorter than asked.
    step = max(1, min(300, expires_in // 10))
    return math.ceil((now + expires_in) / step) * step


def _clean_content_type(value: str) -> str:
    # It becomes a response header: anything malformed is served as plain bytes.
    value = value.strip()
    if len(value) > 200 or not _CONTENT_TYPE.fullmatch(value):
        return DEFAULT_CONTENT_TYPE
    return value


def _subfolders(folder: Path) -> list[Path]:
    # Names starting with "." hold the store's own bookkeeping (metadata, variants).
    try:
        return [
            entry for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith(".")
        ]
    except FileNotFoundError:
        return []


def _stat_or_none(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None


def _atomic_copy(source: Path, target: Path) -> None:
    """Copy in chunks to a temporary name beside `target`, then rename it into place."""
    for attempt in range(3):
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=".put-")
        except FileNotFoundError:
            # A concurrent delete pruned the freshly made folder: make it again.
            if attempt == 2:
                raise
            continue
        os.close(descriptor)
        try:
            shutil.copyfile(source, temporary)
            with open(temporary, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        return


def _atomic_write(target: Path, data: bytes) -> None:
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=".put-")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _prune_empty_parents(folder: Path, *, stop: Path) -> None:
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
