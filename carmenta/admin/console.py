"""The console mounted at /admin, behind a gate that only admins pass.

Everyone else, signed out included, gets a plain 404 for /admin and everything under
it: the gate verifies the session cookie (built-in accounts) or Clerk's token exactly
like the other API routes, and trusts nothing else the browser sends. The console
itself is built on first use, so importing the app reads no settings and opens no
database connection.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import Receive, Scope, Send
from starlette_admin import CustomView, DropDown, Link, route
from starlette_admin.contrib.sqla import Admin

from carmenta import db
from carmenta.admin import operations
from carmenta.admin.views import (
    USER_RELATED,
    AuditLogView,
    ConnectionsNeedingReconnectionView,
    QueueJobsView,
    RelatedRowsField,
    TableView,
)
from carmenta.api.request_user import authenticated_user
from carmenta.auth.models import AuthSession, LoginThrottle, PasswordCredential, WebhookEvent
from carmenta.auth.service import AuthenticatedUser
from carmenta.connections.models import ConnectionEvent, OAuthState, ServiceConnection
from carmenta.conversations.models import Conversation, Message
from carmenta.exports.models import DataExport
from carmenta.files.models import StoredFile
from carmenta.files.storage import load_url_secret
from carmenta.jobs.models import JobProgress
from carmenta.knowledge.models import Document, DocumentChunk, DocumentLink, FileKnowledge
from carmenta.memory.models import Memory
from carmenta.settings import Settings, get_settings
from carmenta.users.models import DeletedAccount, User

BASE_URL = "/admin"
TEMPLATES_DIR = Path(__file__).parent / "templates"


class _EngineSessions(async_sessionmaker):
    """Sessions on the app's engine, which is created on first use, not at import."""

    def __call__(self, **local_kw: Any) -> AsyncSession:
        local_kw.setdefault("bind", db.get_async_engine())
        return super().__call__(**local_kw)


class StorageView(CustomView):
    """Storage used per user, most first."""

    def __init__(self) -> None:
        super().__init__(menu_label="Storage per user", icon="fa fa-hard-drive", path="/storage")

    @route("")
    async def index(self, request: Request) -> Response:
        rows = await operations.storage_per_user(
            session=request.state.session,
            quota_bytes=get_settings().storage_quota_mb * 1024 * 1024,
        )
        return self._admin._template_response(
            request=request,
            name="carmenta/storage.html",
            context={"title": "Storage per user", "rows": rows},
        )


def _cookie_secret(settings: Settings) -> str:
    # Signs the console's CSRF and flash cookies. Derived from a secret every instance
    # shares, so a form served by one instance is accepted by another.
    shared = load_url_secret(configured=settings.storage_url_secret, keys_dir=settings.keys_dir)
    return hmac.new(shared, b"carmenta admin console cookies", hashlib.sha256).hexdigest()


def build_console(settings: Settings) -> Admin:
    admin = Admin(
        _EngineSessions(class_=AsyncSession, expire_on_commit=False),
        title="Carmenta admin",
        base_url=BASE_URL,
        route_name="admin",
        additional_loaders=[FileSystemLoader(str(TEMPLATES_DIR))],
        secret_key=_cookie_secret(settings),
        favicon_url="/favicon.svg",
    )
    user_links = RelatedRowsField("related", label="Their data", getter=lambda _, row: row.id)
    messages_link = RelatedRowsField(
        "related",
        label="Its messages",
        column="conversation_id",
        related=[("message", "Messages")],
        getter=lambda _, row: row.id,
    )
    user_links.related = USER_RELATED
    admin.add_view(
        DropDown(
            "People",
            icon="fa fa-users",
            views=[
                TableView(User, label="Users", icon="fa fa-user", extra_fields=[user_links]),
                TableView(AuthSession, label="Sessions", icon="fa fa-key"),
                TableView(PasswordCredential, label="Built-in accounts", icon="fa fa-id-card"),
                TableView(LoginThrottle, label="Sign-in throttles", icon="fa fa-gauge"),
                TableView(
                    DeletedAccount,
                    label="Deleted accounts",
                    icon="fa fa-user-slash",
                    default_sort=[("deleted_at", True)],
                ),
            ],
        )
    )
    admin.add_view(
        DropDown(
            "Conversations",
            icon="fa fa-comments",
            views=[
                TableView(Conversation, label="Conversations", extra_fields=[messages_link]),
                TableView(Message, label="Messages"),
            ],
        )
    )
    admin.add_view(
        DropDown(
            "Knowledge",
            icon="fa fa-book",
            views=[
                TableView(Document, label="Documents"),
                TableView(DocumentLink, label="Document links"),
                TableView(DocumentChunk, label="Document chunks"),
                TableView(Memory, label="Memories"),
                TableView(StoredFile, label="Files", icon="fa fa-file"),
                TableView(FileKnowledge, label="Files in knowledge"),
                TableView(DataExport, label="Data exports"),
            ],
        )
    )
    admin.add_view(
        DropDown(
            "Connections",
            icon="fa fa-plug",
            views=[
                TableView(ServiceConnection, label="Connections"),
                ConnectionsNeedingReconnectionView(),
                TableView(ConnectionEvent, label="Connection events"),
                TableView(OAuthState, label="Pending authorizations"),
                TableView(
                    WebhookEvent, label="Webhook deliveries", default_sort=[("received_at", True)]
                ),
            ],
        )
    )
    admin.add_view(
        DropDown(
            "Operations",
            icon="fa fa-gears",
            views=[
                QueueJobsView(
                    statuses=("failed",),
                    key="failed-jobs",
                    label="Failed jobs",
                    icon="fa fa-triangle-exclamation",
                ),
                QueueJobsView(
                    statuses=("todo", "doing", "aborting"),
                    key="queued-jobs",
                    label="Queued and running jobs",
                    icon="fa fa-hourglass-half",
                ),
                TableView(JobProgress, label="Job progress", icon="fa fa-bars-progress"),
                StorageView(),
                AuditLogView(),
            ],
        )
    )
    admin.add_view(Link("Back to Carmenta", icon="fa fa-arrow-left", url="/"))
    return admin


class AdminGate:
    """ASGI app at /admin: 404 unless the verified user is an admin."""

    def __init__(self) -> None:
        self._console: Starlette | None = None
        self._lock = threading.Lock()

    def console(self) -> Starlette:
        with self._lock:
            if self._console is None:
                admin = build_console(get_settings())
                admin.mount_to(Starlette())
                assert admin.app is not None
                self._console = admin.app
        return self._console

    @property
    def routes(self) -> list:
        # The outer router resolves `admin:...` URL names through these.
        return self.console().routes

    async def _admin(self, request: Request) -> AuthenticatedUser | None:
        user = await authenticated_user(request, settings=get_settings())
        return user if user is not None and user.is_admin else None

    async def entry(self, request: Request) -> Response:
        """`/admin` itself, without the slash the console's own routes start with."""
        if await self._admin(request) is None:
            return PlainTextResponse("Not Found", status_code=404)
        return RedirectResponse(BASE_URL + "/", status_code=307)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await PlainTextResponse("Not Found", status_code=404)(scope, receive, send)
            return
        request = Request(scope)
        user = await self._admin(request)
        if user is None:
            await PlainTextResponse("Not Found", status_code=404)(scope, receive, send)
            return
        request.state.carmenta_admin = user
        await self.console()(scope, receive, send)
