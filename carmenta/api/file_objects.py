"""GET/HEAD /files/object/{key}: the local store's objects, through signed URLs only.

With Supabase Storage configured, signed URLs point at Supabase and this route
answers 404. Everything served is treated as untrusted content: no sniffing, no
scripts, and a download (not a page) for anything that is not an image, audio
or a PDF.
"""

from __future__ import annotations

import math
import time
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from carmenta.files.storage import get_storage
from carmenta.files.storage.base import NotRenderable, ObjectNotFound, TransformError
from carmenta.files.storage.local import (
    LocalObject,
    LocalStore,
    SignatureExpired,
    SignatureInvalid,
    SignedAccess,
)
from carmenta.settings import get_settings

# No scripts, no plugins, no same-origin powers, whatever the bytes turn out to be.
SANDBOXED_POLICY = "default-src 'none'; frame-ancestors 'self'; sandbox"
# Chrome's and Firefox's PDF viewers refuse to run in a sandboxed document, and
# Chrome's needs its own embed and inline styles; scripts stay blocked.
PDF_POLICY = (
    "default-src 'none'; object-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'self'"
)
_COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Referrer-Policy": "no-referrer",
}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": message},
        status_code=status,
        headers={
            **_COMMON_HEADERS,
            "Cache-Control": "no-store",
            "Content-Security-Policy": SANDBOXED_POLICY,
        },
    )


def shown_inline(content_type: str) -> bool:
    """Whether a browser may display this type in place rather than download it."""
    base = content_type.split(";", 1)[0].strip().lower()
    if base == "image/svg+xml":
        # SVG is a document that can carry scripts, not a plain picture.
        return False
    return base.startswith(("image/", "audio/")) or base == "application/pdf"


def content_disposition(*, content_type: str, download_name: str | None, key: str) -> str:
    if download_name is None and shown_inline(content_type):
        return "inline"
    name = download_name or key.rsplit("/", 1)[-1]
    # A plain-ASCII fallback for old clients, then the exact name (RFC 6266 / 5987).
    fallback = "".join(
        char if char.isascii() and char.isprintable() and char not in '"\\' else "_"
        for char in name
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _file_response(
    *, found: LocalObject, access: SignedAccess, key: str, now: float
) -> FileResponse:
    disposition = content_disposition(
        content_type=found.content_type, download_name=access.download_name, key=key
    )
    base_type = found.content_type.split(";", 1)[0].strip().lower()
    inline_pdf = disposition == "inline" and base_type == "application/pdf"
    remaining = max(0, math.floor(access.expires_at - now))
    return FileResponse(
        found.path,
        media_type=found.content_type,
        stat_result=found.stat,
        headers={
            **_COMMON_HEADERS,
            "Content-Disposition": disposition,
            "Cache-Control": f"private, max-age={remaining}",
            "Content-Security-Policy": PDF_POLICY if inline_pdf else SANDBOXED_POLICY,
        },
    )


async def serve_object(request: Request) -> Response:
    store = get_storage(get_settings())
    if not isinstance(store, LocalStore):
        return _error(404, "Not found")
    key = request.path_params["key"]
    now = time.time()
    try:
        access = store.verify(key=key, query=request.query_params, now=now)
    except TransformError as error:
        return _error(400, str(error))
    except ValueError:
        # Not a key this store could hold.
        return _error(404, "Not found")
    except SignatureExpired:
        return _error(403, "This link has expired.")
    except SignatureInvalid:
        return _error(403, "This link is not valid.")
    try:
        if access.transform is None:
            found = await store.stat(key=key)
        else:
            found = await store.variant(key=key, transform=access.transform)
    except ObjectNotFound:
        return _error(404, "Not found")
    except NotRenderable as error:
        return _error(415, str(error))
    return _file_response(found=found, access=access, key=key, now=now)
