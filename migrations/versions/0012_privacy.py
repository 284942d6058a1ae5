"""Runner applications: an IC number may be submitted again (the duplicate is kept for an
admin to review instead of being refused, so the public form does not reveal which IC numbers
are registered); application numbers are random, so they are no longer counted.

Revision ID: 0012_privacy
Revises: 0011_sessions
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_privacy"
down_revision = "0011_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("runner_applications_ic_number_key", "runner_applications", type_="unique")
    op.create_index("ix_runner_applications_ic_number", "runner_applications", ["ic_number"])


def downgrade() -> None:
    # Duplicates kept for review must be resolved before the unique key can come back.
    op.drop_index("ix_runner_applications_ic_number", "runner_applications")
    op.create_unique_constraint("runner_applications_ic_number_key", "runner_applications",
                                ["ic_number"])
