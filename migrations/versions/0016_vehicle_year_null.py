"""Runner: the vehicle year is optional (the runner web app leaves it out); NULL when unknown.

Revision ID: 0016_vehicle_year_null
Revises: 0002_runner
"""

from alembic import op

revision = "0016_vehicle_year_null"
down_revision = "0002_runner"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("runners", "vehicle_year", nullable=True)


def downgrade() -> None:
    op.execute("UPDATE runners SET vehicle_year = 0 WHERE vehicle_year IS NULL")
    op.alter_column("runners", "vehicle_year", nullable=False)
