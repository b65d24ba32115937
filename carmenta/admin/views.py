"""The console's views: one per table, plus the operational ones.

Every table view is built from the table itself: its visible columns (never a secret
one, see `carmenta.admin.secrets`), foreign keys shown as links to the row they point
at, a user's rows reachable from the user's page. Rows are edited, never created or
deleted here: the app creates them, and deleting an account goes through account
deletion, which also removes stored objects and revokes provider tokens.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Enum,
    Integer,
    String,
    Table,
    Text,
    cast,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import ARRAY
from starlette.requests import Request
from starlette_admin import (
    BaseField,
    BooleanField,
    ComputedField,
    DateTimeField,
    FloatField,
    IntegerField,
    JSONField,
    StringField,
    TextAreaField,
    row_action,
)
from starlette_admin.contrib.sqla import ModelView
from starlette_admin.exceptions import ActionFailed, FormValidationError
from starlette_admin.types import RequestAction

from carmenta.admin import audit
from carmenta.admin.models import AdminAuditLog
from carmenta.admin.secrets import is_administered, visible_columns
from carmenta.connections.models import ConnectionStatus, ServiceConnection
from carmenta.jobs import service as jobs_service


@dataclass
class ForeignKeyField(StringField):
    """A key that points at another row, shown as a link to that row's page."""

    target_view: str = ""
    list_template: str = "carmenta/link.html"
    detail_template: str = "carmenta/link.html"

    async def serialize_value(self, request: Request, value: Any, action: Any = None) -> Any:
        return str(value)


@dataclass
class RelatedRowsField(ComputedField):
    """Links from a row's page to lists of the rows that point at it."""

    column: str = "owner_id"
    related: list[tuple[str, str]] = field(default_factory=list)
    exclude_from_list: bool = True
    exclude_from_edit: bool = True
    exclude_from_export: bool = True
    exclude_from_import: bool = True
    detail_template: str = "carmenta/related.html"

    async def serialize_value(self, request: Request, value: Any, action: Any = None) -> Any:
        return str(value)


# The view key each table is reached at; foreign keys link to these.
VIEW_KEYS: dict[str, str] = {
    "users": "user",
    "conversations": "conversation",
    "messages": "message",
    "documents": "document",
    "document_links": "document-link",
    "document_chunks": "document-chunk",
    "memories": "memory",
    "files": "file",
    "file_knowledge": "file-knowledge",
    "data_exports": "data-export",
    "service_connections": "connection",
    "connection_events": "connection-event",
    "oauth_states": "oauth-state",
    "auth_sessions": "auth-session",
    "password_credentials": "password-credential",
    "login_throttles": "login-throttle",
    "webhook_events": "webhook-event",
    "deleted_accounts": "deleted-account",
    "job_progress": "job-progress",
    "admin_audit_log": "audit-log",
}

# What a user's page links to: their rows in these tables.
USER_RELATED: list[tuple[str, str]] = [
    ("conversation", "Conversations"),
    ("message", "Messages"),
    ("file", "Files"),
    ("connection", "Connections"),
    ("document", "Documents"),
    ("memory", "Memories"),
    ("job-progress", "Jobs"),
    ("audit-log", "Audit entries"),
]

_TIMESTAMPS = {"created_at", "updated_at"}

# Columns other code keeps consistent (identities, stored object keys, tree paths):
# shown, but changed only through the app itself.
READ_ONLY_COLUMNS: frozenset[tuple[str, str]] = frozenset(
    {
        ("users", "external_auth_id"),
        ("users", "auth_provider"),
        ("conversations", "last_activity_at"),
        ("password_credentials", "email"),
        ("documents", "path"),
        ("files", "storage_key"),
        ("files", "sha256"),
        ("files", "size_bytes"),
        ("files", "revision"),
        ("data_exports", "object_key"),
        ("service_connections", "provider"),
        ("service_connections", "credential_type"),
        ("service_connections", "account_id"),
        ("job_progress", "task_name"),
    }
)


def _admin_user_id(request: Request) -> uuid.UUID:
    # Set by the gate in front of the console, from the verified session only.
    return request.state.carmenta_admin.user_id


# Long text is edited in a text area; the rest of the text columns in one line.
_LONG_TEXT = {"content", "extracted_text", "error", "last_error", "detail", "message"}


def _column_field(table: Table, column: Column) -> BaseField:
    """The field for one column, chosen by its type."""
    read_only = (
        column.primary_key
        or column.name in _TIMESTAMPS
        or bool(column.foreign_keys)
        or (table.name, column.name) in READ_ONLY_COLUMNS
    )
    options: dict[str, Any] = {"exclude_from_edit": bool(read_only)}
    for foreign_key in column.foreign_keys:
        target = VIEW_KEYS.get(foreign_key.column.table.name)
        if target is not None:
            return ForeignKeyField(column.name, target_view=target, **options)
    if isinstance(column.type, ARRAY):
        return StringField(column.name, exclude_from_edit=True, searchable=False)
    if isinstance(column.type, JSONB):
        return JSONField(column.name, **options)
    python_type = _python_type(column)
    if python_type is bool:
        return BooleanField(column.name, **options)
    if python_type is int:
        return IntegerField(column.name, **options)
    if python_type is float:
        return FloatField(column.name, **options)
    if python_type is datetime:
        return DateTimeField(column.name, **options)
    if column.name in _LONG_TEXT:
        return TextAreaField(column.name, exclude_from_list=column.name == "content", **options)
    # Text, UUIDs and ltree paths alike.
    return StringField(column.name, **options)


def _python_type(column: Column) -> type | None:
    try:
        return column.type.python_type
    except NotImplementedError:
        return None


def table_fields(table: Table) -> list[BaseField | str]:
    return [_column_field(table, column) for column in visible_columns(table)]


class TableView(ModelView):
    """Browse, search, filter, sort and edit one table; every edit is audited."""

    page_size = 25
    page_size_options = [25, 50, 100]
    field_order: tuple[str, ...] = ()
    hidden_in_list: frozenset[str] = frozenset()

    def __init__(
        self,
        model: type,
        *,
        label: str,
        icon: str = "fa fa-table",
        editable: bool = True,
        extra_fields: list[BaseField] | None = None,
        default_sort: list[tuple[str, bool]] | None = None,
        key: str | None = None,
    ) -> None:
        table = model.__table__
        assert is_administered(table), f"{table.name} is not for the console"
        fields = [*table_fields(table), *(extra_fields or [])]
        order = self.field_order
        fields.sort(key=lambda f: order.index(f.name) if f.name in order else len(order))
        for field_ in fields:
            if field_.name in self.hidden_in_list:
                field_.exclude_from_list = True
        self.fields = fields
        self._editable = editable
        columns = {column.name for column in visible_columns(table)}
        if default_sort is None:
            default_sort = [("created_at", True)] if "created_at" in columns else []
        self.fields_default_sort = default_sort
        self.searchable_fields = None
        super().__init__(
            model,
            icon=icon,
            display_name=label,
            menu_label=label,
            key=key or VIEW_KEYS[table.name],
        )
        self.table_name = table.name

    def can_create(self, request: Request) -> bool:
        return False

    def can_delete(self, request: Request) -> bool:
        return False

    def can_edit(self, request: Request) -> bool:
        return self._editable

    def can_import(self, request: Request) -> bool:
        # An import would write rows past the audit trail.
        return False

    def get_search_query(self, request: Request, term: str) -> Any:
        # Keys are searched too, so a pasted id finds its row.
        clauses = [super().get_search_query(request, term)]
        for column in visible_columns(self.model.__table__):
            if column.primary_key or column.foreign_keys:
                clauses.append(cast(column, String).ilike(f"%{term}%"))
        return or_(*clauses)

    async def edit(self, request: Request, pk: Any, data: dict[str, Any]) -> Any:
        # An emptied box clears a nullable column rather than storing "".
        columns = self.model.__table__.columns
        for name, value in data.items():
            if value == "" and name in columns and columns[name].nullable:
                data[name] = None
        existing = await self.find_by_pk(request, pk)
        before = audit.snapshot(existing) if existing is not None else {}
        try:
            row = await super().edit(request, pk, data)
        except (IntegrityError, DataError) as error:
            raise FormValidationError(self._refusal(request, error)) from None
        after = audit.snapshot(row)
        changed_before, changed_after = audit.changes(before, after)
        if changed_after:
            await audit.record(
                session=request.state.session,
                admin_user_id=_admin_user_id(request),
                owner_id=audit.owner_of(self.table_name, after),
                table_name=self.table_name,
                row_id=str(pk),
                action="edit",
                before=changed_before,
                after=changed_after,
            )
        return row

    def _refusal(self, request: Request, error: DBAPIError) -> dict[str, str]:
        """A readable reason, on the field it concerns; never the row's values."""
        diagnostics = getattr(error.orig, "diag", None)
        constraint = getattr(diagnostics, "constraint_name", None) or ""
        column = getattr(diagnostics, "column_name", None) or ""
        editable = [f.name for f in self.get_fields_list(request, action=RequestAction.EDIT)]
        target = column if column in editable else None
        if target is None:
            target = next((name for name in editable if name in constraint), None)
        if target is None:
            target = editable[0] if editable else "id"
        if isinstance(error, IntegrityError) and constraint:
            reason = f"This value breaks the rule {constraint}; nothing was saved."
        else:
            reason = "The database refused this value; nothing was saved."
        return {target: reason}


class AuditLogView(TableView):
    # When and what changed come first; the entry's own id only on its page.
    field_order = ("created_at", "table_name", "row_id", "action", "before", "after")
    hidden_in_list = frozenset({"id"})

    def __init__(self) -> None:
        super().__init__(
            AdminAuditLog, label="Audit log", icon="fa fa-clipboard-list", editable=False
        )


class ConnectionsNeedingReconnectionView(TableView):
    """Connections whose owner must connect again (or that keep failing)."""

    def __init__(self) -> None:
        super().__init__(
            ServiceConnection,
            label="Needing reconnection",
            icon="fa fa-plug-circle-exclamation",
            key="connection-reconnect",
            default_sort=[("updated_at", True)],
        )

    def _failing(self, statement: Any) -> Any:
        return statement.where(
            ServiceConnection.status.in_(  # type: ignore[attr-defined]
                [ConnectionStatus.needs_reauth.value, ConnectionStatus.error.value]
            )
        )

    def get_list_query(self, request: Request) -> Any:
        return self._failing(super().get_list_query(request))

    def get_count_query(self, request: Request) -> Any:
        return self._failing(super().get_count_query(request))


class _QueueBase(DeclarativeBase):
    """The job queue's own tables, mapped for reading; their schema belongs to the queue."""


QUEUE_STATUSES = ("todo", "doing", "succeeded", "failed", "cancelled", "aborting", "aborted")


class QueueJob(_QueueBase):
    __tablename__ = "procrastinate_jobs"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    queue_name: Mapped[str] = mapped_column(String)
    task_name: Mapped[str] = mapped_column(String)
    priority: Mapped[int] = mapped_column(Integer)
    lock: Mapped[str | None] = mapped_column(Text)
    queueing_lock: Mapped[str | None] = mapped_column(Text)
    args: Mapped[dict] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(
        Enum(*QUEUE_STATUSES, name="procrastinate_job_status", create_type=False)
    )
    scheduled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer)
    abort_requested: Mapped[bool] = mapped_column(Boolean)


class QueueJobsView(ModelView):
    """Jobs in some of the queue's states, with retry and cancel on each row."""

    page_size = 25
    page_size_options = [25, 50, 100]
    fields = [
        IntegerField("id"),
        StringField("task_name"),
        StringField("queue_name"),
        StringField("status"),
        IntegerField("attempts"),
        IntegerField("priority"),
        DateTimeField("scheduled_at"),
        BooleanField("abort_requested"),
        StringField("lock"),
        StringField("queueing_lock"),
        JSONField("args"),
    ]
    fields_default_sort = [("id", True)]
    searchable_fields = ["task_name", "queue_name", "lock", "queueing_lock"]
    row_actions = ["view", "retry", "cancel"]

    def __init__(self, *, statuses: tuple[str, ...], key: str, label: str, icon: str) -> None:
        self.statuses = statuses
        super().__init__(QueueJob, icon=icon, display_name=label, menu_label=label, key=key)

    def can_create(self, request: Request) -> bool:
        return False

    def can_edit(self, request: Request) -> bool:
        return False

    def can_delete(self, request: Request) -> bool:
        return False

    def can_import(self, request: Request) -> bool:
        return False

    def get_list_query(self, request: Request) -> Any:
        return select(QueueJob).where(QueueJob.status.in_(self.statuses))

    def get_count_query(self, request: Request) -> Any:
        return select(func.count()).select_from(QueueJob).where(QueueJob.status.in_(self.statuses))

    async def _act(self, request: Request, pk: Any, action: str) -> str:
        session = request.state.session
        job_id = int(pk)
        before = {"status": (await session.get(QueueJob, job_id, populate_existing=True)).status}
        try:
            if action == "retry":
                await jobs_service.retry_failed_job(session=session, job_id=job_id)
            else:
                await jobs_service.cancel_any_job(session=session, job_id=job_id)
        except jobs_service.JobActionError as error:
            raise ActionFailed(str(error)) from None
        row = await session.get(QueueJob, job_id, populate_existing=True)
        owner = (
            await session.execute(
                text("select owner_id from job_progress where job_id = :job_id"),
                {"job_id": job_id},
            )
        ).scalar()
        await audit.record(
            session=session,
            admin_user_id=_admin_user_id(request),
            owner_id=owner,
            table_name="procrastinate_jobs",
            row_id=str(job_id),
            action=action,
            before=before,
            after={"status": row.status},
        )
        return row.status

    @row_action(
        name="retry",
        text="Retry",
        confirmation="Run this job again?",
        icon_class="fa fa-rotate-right",
        submit_btn_text="Retry",
    )
    async def retry_row_action(self, request: Request, pk: Any) -> str:
        await self._act(request, pk, "retry")
        return f"Job {pk} is queued again."

    @row_action(
        name="cancel",
        text="Cancel",
        confirmation="Cancel this job? A running job stops at its next stopping point.",
        icon_class="fa fa-ban",
        submit_btn_text="Cancel job",
        submit_btn_class="btn btn-danger",
    )
    async def cancel_row_action(self, request: Request, pk: Any) -> str:
        status = await self._act(request, pk, "cancel")
        return f"Job {pk} is {jobs_service.job_status(status).value}."
