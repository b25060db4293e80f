"""nodes: trust_revision

One more at every write of a node's trust (a verification's, an administrator's quarantine or release), under
the row's lock. The scheduling process keeps the trust it last wrote in memory, and a poll carries a node row
read seconds earlier; of the two, the one with the higher revision is the newer. Result counts could not tell:
a quarantine or a release changes no count.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 09:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch_op:
        batch_op.add_column(
            sa.Column("trust_revision", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    # In place (SQLite 3.35+ drops a column itself): rebuilding the table would fail its foreign keys as soon
    # as a lease names a node.
    with op.batch_alter_table("nodes", recreate="never") as batch_op:
        batch_op.drop_column("trust_revision")
