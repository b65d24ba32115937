"""A user with something in every table and the store, for the export and deletion tests."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
from sqlalchemy import text

from carmenta import db
from carmenta.auth import builtin
from carmenta.connections import service as connections_service
from carmenta.connections.providers.base import AccountIdentity, ProviderSpec
from carmenta.conversations import service as conversations_service
from carmenta.conversations.models import MessageStatus
from carmenta.files.processing import process_file
from carmenta.knowledge import file_documents, links
from carmenta.knowledge import service as knowledge_service
from carmenta.model_fields import utcnow
from carmenta.settings import get_settings
from tests.integration import files_support
from tests.integration.connections_support import api_key_provider, tokens

QUESTION = "When should I plant the tomatoes in the north bed?"
ANSWER = "After the last frost, once the soil is above 10 degrees."
DOCUMENT_BODY = "Tomatoes need sun. See [[Compost]] for the soil.\n" * 20
MEMORY = "Grows heirloom tomatoes on an allotment"
FILE_BODY = b"Seed order: Brandywine, Black Krim, Sungold.\n"
# The password files_support.sign_up gives every account.
SIGN_UP_PASSWORD = "correct horse battery"  # noqa: S105 (a test value)


@dataclass
class Seeded:
    user: files_support.SignedIn
    file_id: uuid.UUID
    # Strings that must never leave the database in readable form.
    secrets: list[str] = field(default_factory=list)
    access_tokens: list[str] = field(default_factory=list)


async def seed_everything(client: httpx.AsyncClient, spec: ProviderSpec) -> Seeded:
    """Sign up, then write conversations, documents, links, chunks, memories, a file in
    the knowledge base, connections (with tokens and an API key), an OAuth handshake
    in flight and an unredeemed sign-in handoff."""
    user = await files_support.sign_up()
    owner = user.user_id
    access = f"planted-access-{secrets.token_hex(12)}"
    refresh = f"planted-refresh-{secrets.token_hex(12)}"
    api_key = f"sk-planted-{secrets.token_hex(16)}"
    verifier = f"planted-verifier-{secrets.token_hex(16)}"

    upload = await files_support.upload(client, user, "seed order.txt", FILE_BODY)
    assert upload.status_code == 201, upload.text
    file_id = uuid.UUID(upload.json()["id"])
    await process_file(file_id=file_id, settings=get_settings())

    async with db.session_scope() as session:
        conversation = await conversations_service.create_conversation(
            session=session, owner_id=owner, title="Garden plans"
        )
        await conversations_service.add_user_message(
            session=session, owner_id=owner, conversation_id=conversation.id, content=QUESTION
        )
        reply = await conversations_service.start_reply(
            session=session, owner_id=owner, conversation_id=conversation.id, model="offline"
        )
        await conversations_service.finish_reply(
            session=session,
            owner_id=owner,
            message_id=reply.id,
            content=ANSWER,
            status=MessageStatus.complete,
        )
        document = await knowledge_service.create_document(
            session=session,
            owner_id=owner,
            parent_path="knowledge.garden",
            title="Tomatoes",
            content=DOCUMENT_BODY,
        )
        await links.refresh_links(
            session=session, owner_id=owner, document_id=document.id, content=DOCUMENT_BODY
        )
        await knowledge_service.rechunk_document(
            session=session, owner_id=owner, document_id=document.id
        )
        await session.execute(
            text(
                "insert into memories (owner_id, content, kind) values (:owner, :content, 'fact')"
            ),
            {"owner": owner, "content": MEMORY},
        )
        # An admin once edited this person's conversation: the audit entry is theirs too.
        await session.execute(
            text(
                "insert into admin_audit_log (owner_id, table_name, row_id, action, before,"
                " after) values (:owner, 'conversations', :row, 'edit',"
                ' \'{"title": "Old"}\'::jsonb, \'{"title": "Garden plans"}\'::jsonb)'
            ),
            {"owner": owner, "row": str(conversation.id)},
        )
        await file_documents.add_file_to_knowledge(session=session, owner_id=owner, file_id=file_id)
        await connections_service.save_oauth_connection(
            session=session,
            owner_id=owner,
            provider=spec,
            identity=AccountIdentity(account_id="ada", label="ada@example.com"),
            tokens=tokens(access=access, refresh=refresh),
            requested_scopes=["read", "write"],
        )
        await connections_service.save_api_key_connection(
            session=session,
            owner_id=owner,
            provider=api_key_provider(),
            identity=AccountIdentity(account_id="key", label="Key account"),
            api_key=api_key,
            base_url="https://models.example.com/v1",
        )
        await session.execute(
            text(
                "insert into oauth_states (state_hash, owner_id, provider, code_verifier,"
                " expires_at) values (:hash, :owner, :provider, :verifier, :expires)"
            ),
            {
                "hash": secrets.token_hex(32),
                "owner": owner,
                "provider": spec.id,
                "verifier": verifier,
                "expires": utcnow() + timedelta(minutes=10),
            },
        )
        auth_session = await builtin.create_session(
            session=session, settings=get_settings(), user_id=owner
        )
        await builtin.create_handoff(session=session, session_id=auth_session.id)
    return Seeded(
        user=user,
        file_id=file_id,
        secrets=[access, refresh, api_key, verifier, SIGN_UP_PASSWORD],
        access_tokens=[access],
    )
