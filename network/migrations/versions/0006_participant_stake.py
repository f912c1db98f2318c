"""participant stake: what each approving domain's owner requires of every participant on chain

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("federated_participants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("stake_wei", sa.String(length=40), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("federated_participants", schema=None) as batch_op:
        batch_op.drop_column("stake_wei")
