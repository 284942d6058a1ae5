"""Identity: refresh tokens remember their session (the refresh-token family), so a reused
token can revoke every token of its session at once.

Revision ID: 0011_sessions
Revises: 0004_identity
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_sessions"
down_revision = "0004_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: tokens issued before sessions existed have none (their reuse revokes all of
    # the user's sessions instead).
    op.add_column("refresh_tokens", sa.Column("session_id", sa.String(64)))
    op.create_index("ix_refresh_tokens_session_id", "refresh_tokens", ["session_id"])


def downgrade() -> None:
    op.drop_index("ix_refresh_tokens_session_id", table_name="refresh_tokens")
    op.drop_column("refresh_tokens", "session_id")
