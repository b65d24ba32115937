"""At most one reply streams in a conversation, kept by a unique index.

Sending used to lock the conversation's row, look for a streaming reply and then insert:
four round trips on the way to the first token. With this index the message and its
reply go in with one statement (`on conflict do nothing` when a reply is already
streaming), and two sends at once still store one exchange.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-28 13:30:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Should a conversation hold more than one (the old check was only as good as its
    # callers), the newest keeps streaming and the others become interrupted, which
    # the person can regenerate.
    op.execute(
        """
        update messages set status = 'interrupted', updated_at = now()
         where status = 'streaming'
           and id not in (select distinct on (conversation_id) id from messages
                           where status = 'streaming'
                           order by conversation_id, created_at desc)
        """
    )
    op.create_index(
        "uq_messages_one_streaming_reply",
        "messages",
        ["conversation_id"],
        unique=True,
        postgresql_where=sa.text("status = 'streaming'"),
    )


def downgrade() -> None:
    op.drop_index("uq_messages_one_streaming_reply", table_name="messages")
