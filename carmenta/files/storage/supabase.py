"""Supabase Storage behind the StorageBackend interface, through the official client.

The bucket is private: objects are reached only through signed URLs that Supabase
serves itself (`/object/sign/…`, or `/render/image/sign/…` when transformed). It is
created private on first use when missing; a bucket that turns out to be public is
refused rather than used.

Streaming: uploads go through the client's `upload()` with the file's path, which
httpx sends as a multipart body read in 64 KiB chunks (the file is never whole in
memory). The client's `download()` returns the whole body as bytes, so `read` and
`download_to` stream the same authenticated object route with the client's own
httpx connection pool instead.

Transformations map onto Supabase's: width, height, resize and quality as they
are; `gravity=auto` becomes Supabase's smart gravity (`sm`); webp and avif are
asked for by name. Supabase's renderer has no jpeg or png output, so those ask for
`origin` (the source format). PDF first pages are not rendered by Supabase: store
a thumbnail image as its own object for those.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import weakref
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from storage3.exceptions import StorageApiError
from supabase import AsyncClientOptions, acreate_client

from carmenta.files.storage.base import ObjectNotFound, StorageError, Transform
from carmenta.files.storage.local import validate_key

CHUNK_SIZE = 64 * 1024
# Supabase removes at most this many objects per request, and lists as many per page.
_BATCH = 1000
_SUPABASE_FORMATS = ("webp", "avif")


class SupabaseStore:
    name = "supabase"

    def __init__(
        self,
        *,
        url: str,
        service_role_key: str,
        bucket: str,
        timeout_seconds: float = 60.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.bucket = bucket
        self._key = service_role_key
        self._timeout = httpx.Timeout(timeout_seconds, connect=10.0)
        # httpx clients belong to one event loop; the store may be shared by several.
        self._connections: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Connection] = (
            weakref.WeakKeyDictionary()
        )

    async def _connection(self) -> _Connection:
        loop = asyncio.get_running_loop()
        connection = self._connections.get(loop)
        if connection is None:
            connection = _Connection(self)
            self._connections[loop] = connection
        await connection.ready()
        return connection

    async def aclose(self) -> None:
        """Close this event loop's connections (tests and shutdown)."""
        connection = self._connections.pop(asyncio.get_running_loop(), None)
        if connection is not None:
            await connection.http.aclose()

    # StorageBackend ----------------------------------------------------------------

    async def put_file(self, *, key: str, path: Path, content_type: str) -> None:
        validate_key(key)
        connection = await self._connection()
        with _translated_errors():
            await connection.bucket.upload(
                key,
                Path(path),
                {"content-type": content_type, "upsert": "true", "cache-control": "3600"},
            )

    async def read(self, *, key: str) -> AsyncIterator[bytes]:
        validate_key(key)
        connection = await self._connection()
        async with connection.stream_object(key) as response:
            async for chunk in response.aiter_bytes(CHUNK_SIZE):
                yield chunk

    async def download_to(self, *, key: str, path: Path) -> None:
        validate_key(key)
        target = Path(path)
        connection = await self._connection()
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=".download-")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                async with connection.stream_object(key) as response:
                    async for chunk in response.aiter_bytes(CHUNK_SIZE):
                        await asyncio.to_thread(handle.write, chunk)
            os.replace(temporary, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)

    async def exists(self, *, key: str) -> bool:
        validate_key(key)
        connection = await self._connection()
        with _translated_errors():
            return await connection.bucket.exists(key)

    async def delete_prefix(self, *, prefix: str) -> None:
        """Delete the object named `prefix` and every object below `prefix/`."""
        prefix = validate_key(prefix.strip("/"))
        connection = await self._connection()
        with _translated_errors():
            names = [prefix, *await _list_below(connection, prefix)]
            for start in range(0, len(names), _BATCH):
                await connection.bucket.remove(names[start : start + _BATCH])

    async def file_folders(self) -> AsyncIterator[tuple[str, datetime]]:
        connection = await self._connection()
        with _translated_errors():
            for user in await _entries(connection, ""):
                if user.get("id") is not None:
                    continue
                for folder in await _entries(connection, user["name"]):
                    if folder.get("id") is not None:
                        continue
                    prefix = f"{user['name']}/{folder['name']}"
                    stamps = [
                        datetime.fromisoformat(item["updated_at"].replace("Z", "+00:00"))
                        for item in await _entries(connection, prefix)
                        if item.get("updated_at")
                    ]
                    yield prefix, max(stamps, default=datetime.now(UTC))

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
        options: dict[str, Any] = {}
        if transform is not None:
            # Fail here rather than hand out a URL that can only answer an error.
            Transform.from_query(transform.to_query())
            options["transform"] = supabase_transform(transform)
        if download_name:
            options["download"] = download_name
        connection = await self._connection()
        with _translated_errors():
            signed = await connection.bucket.create_signed_url(key, expires_in, options)
        return str(signed["signedURL"])


def supabase_transform(transform: Transform) -> dict[str, Any]:
    """Supabase's `transform` options for a Transform (see the module notes)."""
    options: dict[str, Any] = {"resize": transform.resize, "quality": transform.quality}
    if transform.width is not None:
        options["width"] = transform.width
    if transform.height is not None:
        options["height"] = transform.height
    options["format"] = transform.format if transform.format in _SUPABASE_FORMATS else "origin"
    if transform.gravity == "auto":
        options["gravity"] = "sm"
    return options


class _Connection:
    """One event loop's client, plus the bucket check that runs once."""

    def __init__(self, store: SupabaseStore) -> None:
        self._store = store
        self._lock = asyncio.Lock()
        self._ready = False
        self.http = httpx.AsyncClient(timeout=store._timeout, follow_redirects=True)
        self.headers = {"apikey": store._key, "Authorization": f"Bearer {store._key}"}
        self.bucket: Any = None
        self.object_url = f"{store.url}/storage/v1/object/authenticated/{quote(store.bucket)}/"

    async def ready(self) -> None:
        if self._ready:
            return
        async with self._lock:
            if self._ready:
                return
            client = await acreate_client(
                self._store.url,
                self._store._key,
                options=AsyncClientOptions(
                    httpx_client=self.http, auto_refresh_token=False, persist_session=False
                ),
            )
            with _translated_errors(missing_means_no_object=False):
                await _ensure_private_bucket(client.storage, self._store.bucket)
            self.bucket = client.storage.from_(self._store.bucket)
            self._ready = True

    @contextlib.asynccontextmanager
    async def stream_object(self, key: str) -> AsyncIterator[httpx.Response]:
        url = self.object_url + quote(key)
        try:
            async with self.http.stream("GET", url, headers=self.headers) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise _error_from_response(response)
                yield response
        except httpx.HTTPError as error:
            raise StorageError(
                f"Supabase Storage could not be reached ({type(error).__name__})"
            ) from error


async def _ensure_private_bucket(storage: Any, bucket: str) -> None:
    try:
        found = await storage.get_bucket(bucket)
    except StorageApiError as error:
        if not _is_missing(error):
            raise
        try:
            await storage.create_bucket(bucket, options={"public": False})
        except StorageApiError as creation_error:
            # Another process created it in the meantime.
            if not _is_duplicate(creation_error):
                raise
        found = await storage.get_bucket(bucket)
    if found.public:
        raise StorageError(
            f"The Supabase bucket {bucket!r} is public: make it private in the Supabase "
            "dashboard (Storage > bucket settings), or set SUPABASE_BUCKET to another bucket"
        )


async def _entries(connection: _Connection, folder: str) -> list[dict]:
    entries: list[dict] = []
    offset = 0
    while True:
        page = await connection.bucket.list(
            folder,
            {"limit": _BATCH, "offset": offset, "sortBy": {"column": "name", "order": "asc"}},
        )
        entries.extend(page)
        if len(page) < _BATCH:
            return entries
        offset += _BATCH


async def _list_below(connection: _Connection, folder: str) -> list[str]:
    names: list[str] = []
    offset = 0
    while True:
        page = await connection.bucket.list(
            folder,
            {"limit": _BATCH, "offset": offset, "sortBy": {"column": "name", "order": "asc"}},
        )
        for item in page:
            path = f"{folder}/{item['name']}"
            if item.get("id") is None:
                # Folders are listed without an id.
                names.extend(await _list_below(connection, path))
            else:
                names.append(path)
        if len(page) < _BATCH:
            return names
        offset += _BATCH


def _status(error: StorageApiError) -> str:
    return str(error.status)


def _is_missing(error: StorageApiError) -> bool:
    # Supabase answers HTTP 400 with `"statusCode": "404"` in the body for these.
    return _status(error) == "404" or "not found" in str(error.code).lower()


def _is_duplicate(error: StorageApiError) -> bool:
    return _status(error) == "409" or str(error.code).lower() in ("duplicate", "conflict")


def _error_from_response(response: httpx.Response) -> StorageError:
    try:
        body = response.json()
        status = str(body.get("statusCode", response.status_code))
        code = str(body.get("error", ""))
        message = str(body.get("message", ""))
    except (ValueError, AttributeError):
        status, code, message = str(response.status_code), "", ""
    if status == "404" or response.status_code == 404 or code == "not_found":
        return ObjectNotFound("no such object")
    return StorageError(f"Supabase Storage refused the request ({status}): {message[:200]}")


@contextlib.contextmanager
def _translated_errors(*, missing_means_no_object: bool = True) -> Iterator[None]:
    try:
        yield
    except StorageApiError as error:
        if missing_means_no_object and _is_missing(error):
            raise ObjectNotFound("no such object") from error
        raise StorageError(
            f"Supabase Storage refused the request ({_status(error)}): {str(error.message)[:200]}"
        ) from error
    except httpx.HTTPError as error:
        raise StorageError(
            f"Supabase Storage could not be reached ({type(error).__name__})"
        ) from error
