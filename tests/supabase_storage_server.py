"""A local stand-in for Supabase Storage, for tests of the Supabase store.

It speaks the REST routes the official client (storage3) calls, shaped after
Supabase's storage-api: buckets, object upload/download/info/list/remove, signed
URLs (HS256 JWTs signed with the server's own secret, carrying the object's
`bucket/name` and, for transformed images, the transformation string) and the
signed render endpoint, which applies the transformation with the app's own
transform module. Like Supabase, most errors answer HTTP 400 with the real status
in the body's `statusCode` (e.g. "404" for a missing object).

It listens on 127.0.0.1 (granian, embedded, in a thread) so the production client
code runs unchanged against it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jwt
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from carmenta.files.storage.base import NotRenderable, Transform
from carmenta.files.storage.transform import render_variant
from tests.local_server import BackgroundServer

PREFIX = "/storage/v1"
_RESIZE = ("cover", "contain", "fill")
_FORMATS = ("origin", "avif", "webp")
_GRAVITIES = ("no", "so", "ea", "we", "noea", "nowe", "soea", "sowe", "ce", "sm", "fp")
_MAX_DIMENSION = 2500


def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class StoredObject:
    id: str
    bucket: str
    name: str
    path: Path
    content_type: str
    cache_control: str
    size: int
    etag: str
    created_at: str
    updated_at: str

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "bucket_id": self.bucket,
            "version": self.id,
            "size": self.size,
            "content_type": self.content_type,
            "cache_control": self.cache_control,
            "etag": self.etag,
            "metadata": self.metadata(),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "last_modified": self.updated_at,
        }

    def metadata(self) -> dict[str, Any]:
        return {
            "eTag": self.etag,
            "size": self.size,
            "mimetype": self.content_type,
            "cacheControl": f"max-age={self.cache_control}",
            "lastModified": self.updated_at,
            "contentLength": self.size,
            "httpStatusCode": 200,
        }


@dataclass
class StorageState:
    root: Path
    jwt_secret: str
    buckets: dict[str, dict[str, Any]] = field(default_factory=dict)
    objects: dict[tuple[str, str], StoredObject] = field(default_factory=dict)
    # (method, path) of every request, for assertions about what the client did.
    requests: list[tuple[str, str]] = field(default_factory=list)
    renders: int = 0

    def service_role_key(self) -> str:
        now = int(time.time())
        return jwt.encode(
            {"role": "service_role", "iss": "supabase", "iat": now, "exp": now + 86_400},
            self.jwt_secret,
            algorithm="HS256",
        )


class StorageApiFailure(Exception):
    """Rendered the way storage-api renders its errors."""

    def __init__(self, status: int, error: str, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.http_status = http_status

    def response(self) -> JSONResponse:
        return JSONResponse(
            {
                "statusCode": str(self.status),
                "code": self.error,
                "error": self.error,
                "message": self.message,
            },
            status_code=self.http_status,
        )


def _no_such_key() -> StorageApiFailure:
    return StorageApiFailure(404, "not_found", "Object not found")


def _no_such_bucket() -> StorageApiFailure:
    return StorageApiFailure(404, "Bucket not found", "Bucket not found")


def build_app(state: StorageState) -> Starlette:
    def authorize(request: Request) -> None:
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ").strip() or request.headers.get("apikey", "")
        if not token:
            raise StorageApiFailure(403, "Unauthorized", "headers must have required property")
        try:
            claims = jwt.decode(token, state.jwt_secret, algorithms=["HS256"])
        except jwt.PyJWTError as error:
            raise StorageApiFailure(403, "Unauthorized", str(error)) from error
        if claims.get("role") != "service_role":
            # The stand-in has no row-level policies: only the service role may act.
            raise StorageApiFailure(403, "Unauthorized", "new row violates row-level security")

    def bucket_of(name: str) -> dict[str, Any]:
        bucket = state.buckets.get(name)
        if bucket is None:
            raise _no_such_bucket()
        return bucket

    def object_of(bucket: str, name: str) -> StoredObject:
        bucket_of(bucket)
        found = state.objects.get((bucket, name))
        if found is None:
            raise _no_such_key()
        return found

    def endpoint(handler, *, signed: bool = False):
        async def wrapped(request: Request) -> Response:
            state.requests.append((request.method, request.url.path))
            try:
                if not signed:
                    authorize(request)
                return await handler(request)
            except StorageApiFailure as failure:
                return failure.response()

        return wrapped

    async def create_bucket(request: Request) -> Response:
        body = await request.json()
        name = body.get("id") or body.get("name")
        if not name:
            raise StorageApiFailure(
                400, "InvalidRequest", "body must have required property 'name'"
            )
        if name in state.buckets:
            raise StorageApiFailure(409, "Duplicate", "The resource already exists")
        now = _now_iso()
        state.buckets[name] = {
            "id": name,
            "name": body.get("name", name),
            "owner": "",
            "public": bool(body.get("public", False)),
            "file_size_limit": body.get("file_size_limit"),
            "allowed_mime_types": body.get("allowed_mime_types"),
            "created_at": now,
            "updated_at": now,
            "type": "STANDARD",
        }
        return JSONResponse({"name": name})

    async def get_bucket(request: Request) -> Response:
        return JSONResponse(bucket_of(request.path_params["bucket"]))

    async def list_buckets(request: Request) -> Response:
        return JSONResponse(list(state.buckets.values()))

    async def upload(request: Request) -> Response:
        bucket, name = request.path_params["bucket"], request.path_params["name"]
        bucket_of(bucket)
        existing = state.objects.get((bucket, name))
        if request.method == "POST":
            if existing is not None and request.headers.get("x-upsert") != "true":
                raise StorageApiFailure(409, "Duplicate", "The resource already exists")
        elif existing is None:
            raise _no_such_key()
        state.root.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=state.root, prefix=".upload-")
        digest = hashlib.md5(usedforsecurity=False)
        size = 0
        content_type = request.headers.get("content-type", "application/octet-stream")
        cache_control = "3600"
        with os.fdopen(descriptor, "wb") as handle:
            if content_type.startswith("multipart/form-data"):
                form = await request.form(max_files=1, max_fields=8)
                part = form.get("file")
                if not isinstance(part, UploadFile):
                    raise StorageApiFailure(400, "InvalidRequest", "No content provided")
                content_type = part.content_type or "application/octet-stream"
                cache_control = str(form.get("cacheControl") or cache_control)
                while chunk := await part.read(64 * 1024):
                    handle.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                await form.close()
            else:
                async for chunk in request.stream():
                    handle.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
        now = _now_iso()
        stored = StoredObject(
            id=str(uuid.uuid4()),
            bucket=bucket,
            name=name,
            path=Path(temporary),
            content_type=content_type,
            cache_control=cache_control,
            size=size,
            etag=f'"{digest.hexdigest()}"',
            created_at=existing.created_at if existing else now,
            updated_at=now,
        )
        if existing is not None:
            existing.path.unlink(missing_ok=True)
        state.objects[(bucket, name)] = stored
        return JSONResponse({"Id": stored.id, "Key": f"{bucket}/{name}"})

    def serve(found: StoredObject, download: str | None) -> Response:
        headers = {"Cache-Control": f"max-age={found.cache_control}", "ETag": found.etag}
        if download is not None:
            if download == "":
                headers["Content-Disposition"] = "attachment;"
            else:
                encoded = quote(download, safe="")
                headers["Content-Disposition"] = (
                    f"attachment; filename={encoded}; filename*=UTF-8''{encoded}"
                )
        return FileResponse(found.path, media_type=found.content_type, headers=headers)

    async def download(request: Request) -> Response:
        found = object_of(request.path_params["bucket"], request.path_params["name"])
        return serve(found, request.query_params.get("download"))

    async def info(request: Request) -> Response:
        found = object_of(request.path_params["bucket"], request.path_params["name"])
        return JSONResponse(found.record())

    async def remove(request: Request) -> Response:
        bucket = request.path_params["bucket"]
        bucket_of(bucket)
        body = await request.json()
        prefixes = body.get("prefixes")
        if not isinstance(prefixes, list) or not prefixes:
            raise StorageApiFailure(
                400, "InvalidRequest", "body/prefixes must NOT have fewer than 1 items"
            )
        if len(prefixes) > 1000:
            raise StorageApiFailure(
                400, "InvalidRequest", "body/prefixes must NOT have more than 1000 items"
            )
        deleted = []
        for name in prefixes:
            found = state.objects.pop((bucket, name), None)
            if found is not None:
                found.path.unlink(missing_ok=True)
                deleted.append(found.record())
        return JSONResponse(deleted)

    async def list_objects(request: Request) -> Response:
        bucket = request.path_params["bucket"]
        bucket_of(bucket)
        body = await request.json()
        folder = str(body.get("prefix") or "").strip("/")
        limit = int(body.get("limit", 100))
        offset = int(body.get("offset", 0))
        search = str(body.get("search") or "")
        start = f"{folder}/" if folder else ""
        entries: dict[str, dict[str, Any]] = {}
        for (owner, name), found in state.objects.items():
            if owner != bucket or not name.startswith(start):
                continue
            rest = name[len(start) :]
            first, _, deeper = rest.partition("/")
            if deeper:
                entries.setdefault(
                    first,
                    {
                        "name": first,
                        "id": None,
                        "updated_at": None,
                        "created_at": None,
                        "last_accessed_at": None,
                        "metadata": None,
                    },
                )
            else:
                entries[first] = {
                    "name": first,
                    "id": found.id,
                    "updated_at": found.updated_at,
                    "created_at": found.created_at,
                    "last_accessed_at": found.updated_at,
                    "metadata": found.metadata(),
                }
        names = sorted(name for name in entries if name.startswith(search))
        reverse = (body.get("sortBy") or {}).get("order") == "desc"
        if reverse:
            names.reverse()
        return JSONResponse([entries[name] for name in names[offset : offset + limit]])

    async def sign(request: Request) -> Response:
        bucket, name = request.path_params["bucket"], request.path_params["name"]
        body = await request.json()
        expires_in = body.get("expiresIn")
        if not str(expires_in).isdigit() or int(expires_in) < 1:
            raise StorageApiFailure(400, "FST_ERR_VALIDATION", "body/expiresIn must be >= 1")
        object_of(bucket, name)
        transformations = _transformation_segments(body.get("transform") or {})
        now = int(time.time())
        claims: dict[str, Any] = {
            "url": f"{bucket}/{name}",
            "iat": now,
            "exp": now + int(expires_in),
        }
        if transformations:
            claims["transformations"] = transformations
            if (body.get("transform") or {}).get("format"):
                claims["format"] = body["transform"]["format"]
        token = jwt.encode(claims, state.jwt_secret, algorithm="HS256")
        route = "render/image" if transformations else "object"
        return JSONResponse({"signedURL": f"/{route}/sign/{bucket}/{name}?token={token}"})

    def verify_token(request: Request) -> dict[str, Any]:
        token = request.query_params.get("token")
        if not token:
            raise StorageApiFailure(
                400, "InvalidRequest", "querystring must have required property 'token'"
            )
        try:
            claims = jwt.decode(token, state.jwt_secret, algorithms=["HS256"])
        except jwt.ExpiredSignatureError as error:
            raise StorageApiFailure(400, "InvalidJWT", "jwt expired") from error
        except jwt.PyJWTError as error:
            raise StorageApiFailure(400, "InvalidJWT", str(error)) from error
        path = f"{request.path_params['bucket']}/{request.path_params['name']}"
        if claims.get("url") != path:
            raise StorageApiFailure(400, "InvalidSignature", "The url do not match the signature")
        return claims

    async def signed_download(request: Request) -> Response:
        verify_token(request)
        found = object_of(request.path_params["bucket"], request.path_params["name"])
        return serve(found, request.query_params.get("download"))

    async def render(found: StoredObject, transform: Transform, download: str | None) -> Response:
        state.root.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=state.root, prefix=".render-")
        os.close(descriptor)
        try:
            content_type = await asyncio.to_thread(
                lambda: render_variant(
                    source=found.path,
                    content_type=found.content_type,
                    transform=transform,
                    dest=Path(temporary),
                )
            )
            # Read whole: variants are small, and the file is gone before the server
            # could send it by path.
            body = Path(temporary).read_bytes()
        except NotRenderable as error:
            raise StorageApiFailure(
                400,
                "ImageProcessingError",
                "The source image is invalid or unsupported for rendering",
            ) from error
        finally:
            Path(temporary).unlink(missing_ok=True)
        state.renders += 1
        headers = {"Cache-Control": f"max-age={found.cache_control}"}
        if download:
            encoded = quote(download, safe="")
            headers["Content-Disposition"] = (
                f"attachment; filename={encoded}; filename*=UTF-8''{encoded}"
            )
        return Response(body, media_type=content_type, headers=headers)

    async def render_signed(request: Request) -> Response:
        claims = verify_token(request)
        found = object_of(request.path_params["bucket"], request.path_params["name"])
        transform = _transform_from_segments(
            claims.get("transformations", ""), accept=request.headers.get("accept", "")
        )
        return await render(found, transform, request.query_params.get("download"))

    async def render_authenticated(request: Request) -> Response:
        found = object_of(request.path_params["bucket"], request.path_params["name"])
        options = {key: value for key, value in request.query_params.items() if key != "download"}
        transform = _transform_from_segments(
            _transformation_segments(options), accept=request.headers.get("accept", "")
        )
        return await render(found, transform, request.query_params.get("download"))

    object_path = "{bucket}/{name:path}"
    routes = [
        Route(f"{PREFIX}/bucket", endpoint(create_bucket), methods=["POST"]),
        Route(f"{PREFIX}/bucket", endpoint(list_buckets), methods=["GET"]),
        Route(f"{PREFIX}/bucket/{{bucket}}", endpoint(get_bucket), methods=["GET"]),
        Route(f"{PREFIX}/object/list/{{bucket}}", endpoint(list_objects), methods=["POST"]),
        Route(f"{PREFIX}/object/sign/{object_path}", endpoint(sign), methods=["POST"]),
        Route(
            f"{PREFIX}/object/sign/{object_path}",
            endpoint(signed_download, signed=True),
            methods=["GET"],
        ),
        Route(f"{PREFIX}/object/info/authenticated/{object_path}", endpoint(info), methods=["GET"]),
        Route(f"{PREFIX}/object/info/{object_path}", endpoint(info), methods=["GET"]),
        Route(f"{PREFIX}/object/authenticated/{object_path}", endpoint(download), methods=["GET"]),
        Route(
            f"{PREFIX}/render/image/sign/{object_path}",
            endpoint(render_signed, signed=True),
            methods=["GET"],
        ),
        Route(
            f"{PREFIX}/render/image/authenticated/{object_path}",
            endpoint(render_authenticated),
            methods=["GET"],
        ),
        Route(f"{PREFIX}/object/{{bucket}}", endpoint(remove), methods=["DELETE"]),
        Route(f"{PREFIX}/object/{object_path}", endpoint(upload), methods=["POST", "PUT"]),
        Route(f"{PREFIX}/object/{object_path}", endpoint(download), methods=["GET"]),
    ]
    return Starlette(routes=routes)


def _transformation_segments(transform: dict[str, Any]) -> str:
    """Validate like storage-api's schema, then encode like its ImageRenderer does."""

    def integer(name: str, minimum: int, maximum: int | None = None) -> int | None:
        value = transform.get(name)
        if value is None:
            return None
        if not str(value).isdigit():
            raise StorageApiFailure(
                400, "FST_ERR_VALIDATION", f"body/transform/{name} must be integer"
            )
        number = int(value)
        if number < minimum:
            raise StorageApiFailure(
                400, "FST_ERR_VALIDATION", f"body/transform/{name} must be >= {minimum}"
            )
        if maximum is not None and number > maximum:
            raise StorageApiFailure(
                400, "FST_ERR_VALIDATION", f"body/transform/{name} must be <= {maximum}"
            )
        return number

    width, height = integer("width", 0), integer("height", 0)
    quality = integer("quality", 20, 100)
    for name, allowed in (("resize", _RESIZE), ("format", _FORMATS), ("gravity", _GRAVITIES)):
        value = transform.get(name)
        if value is not None and value not in allowed:
            raise StorageApiFailure(
                400,
                "FST_ERR_VALIDATION",
                f"body/transform/{name} must be equal to one of the allowed values",
            )
    segments = []
    if height:
        segments.append(f"height:{min(max(height, 1), _MAX_DIMENSION)}")
    if width:
        segments.append(f"width:{min(max(width, 1), _MAX_DIMENSION)}")
    if width or height:
        segments.append(f"resize:{transform.get('resize')}")
    if quality:
        segments.append(f"quality:{quality}")
    if transform.get("format") and transform["format"] != "origin":
        segments.append(f"format:{transform['format']}")
    if transform.get("gravity"):
        segments.append(f"gravity:{transform['gravity']}")
    return ",".join(segments)


def _transform_from_segments(segments: str, *, accept: str) -> Transform:
    values: dict[str, str] = {}
    for segment in segments.split(","):
        name, _, value = segment.partition(":")
        if value:
            values[name] = value
    resize = values.get("resize")
    output = values.get("format")
    if output is None:
        # Supabase picks WebP by itself for clients that accept it.
        output = "webp" if "image/webp" in accept else "origin"
    return Transform(
        width=int(values["width"]) if "width" in values else None,
        height=int(values["height"]) if "height" in values else None,
        resize=resize if resize in _RESIZE else "cover",  # type: ignore[arg-type]
        format=output,  # type: ignore[arg-type]
        quality=int(values.get("quality", "80")),
        gravity="auto" if values.get("gravity") == "sm" else None,
    )


class StoragePeer:
    """The stand-in, listening on 127.0.0.1 in a background thread."""

    def __init__(self, root: Path) -> None:
        self.state = StorageState(root=root, jwt_secret=os.urandom(32).hex())
        self._server = BackgroundServer(
            build_app(self.state), name="supabase-storage-peer", probe_path=f"{PREFIX}/bucket"
        )
        self.port = self._server.port
        self.url = self._server.url
        self.service_role_key = self.state.service_role_key()

    def start(self) -> StoragePeer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        shutil.rmtree(self.state.root, ignore_errors=True)

    def __enter__(self) -> StoragePeer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
