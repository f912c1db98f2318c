"""federated analytics: the minimum group size a participation was filed under

Revision ID: 0006_federated_analytics
Revises: 0005_federated
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_federated_analytics"
down_revision: str | None = "0005_federated"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("federated_participations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("min_group_size", sa.Integer(), nullable=False, server_default="10")
        )


def downgrade() -> None:
    with op.batch_alter_table("federated_participations", schema=None) as batch_op:
        batch_op.drop_column("min_group_size")
