"""leases: index on (job_id, state)

A job's open leases are looked up by job when it is cancelled and, for every open job, when the
coordinator starts; without this index each of those lookups read the whole leases table.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 15:35:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_leases_job_id_state", "leases", ["job_id", "state"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_leases_job_id_state", table_name="leases")
