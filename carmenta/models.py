"""Every table, imported in one place so the metadata is complete (Alembic, tests)."""

from sqlmodel import SQLModel

from carmenta.admin.models import AdminAuditLog
from carmenta.auth.models import (
    AuthSession,
    LoginThrottle,
    PasswordCredential,
    SessionHandoff,
    WebhookEvent,
)
from carmenta.connections.models import ConnectionEvent, OAuthState, ServiceConnection
from carmenta.conversations.models import Conversation, Message
from carmenta.exports.models import DataExport
from carmenta.files.models import StoredFile
from carmenta.jobs.models import JobProgress
from carmenta.knowledge.models import Document, DocumentChunk, DocumentLink, FileKnowledge
from carmenta.memory.models import Memory
from carmenta.users.models import DeletedAccount, User

metadata = SQLModel.metadata

__all__ = [
    "AdminAuditLog",
    "AuthSession",
    "LoginThrottle",
    "PasswordCredential",
    "SessionHandoff",
    "WebhookEvent",
    "ConnectionEvent",
    "Conversation",
    "DataExport",
    "DeletedAccount",
    "Document",
    "DocumentChunk",
    "DocumentLink",
    "FileKnowledge",
    "JobProgress",
    "Memory",
    "Message",
    "OAuthState",
    "ServiceConnection",
    "StoredFile",
    "User",
    "metadata",
]
