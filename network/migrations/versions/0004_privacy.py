"""privacy: signed key setups and joint release

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import grid_common.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # path 8: each participating owner's release of a joint result, recorded from its signed call
    with op.batch_alter_table("federated_participants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("released_at", grid_common.db.UtcDateTime(timezone=True), nullable=True)
        )
    # path 6: the key dealer's signature of the CKKS public context's digest
    with op.batch_alter_table("federated_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("public_context_signature", sa.String(100), nullable=True))
    # path 5: the fewest domains each approving owner lets an aggregate without DP hold
    with op.batch_alter_table("federated_participants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("min_peers", sa.Integer(), nullable=True))


def downgrade() -> None:
    # path 5
    with op.batch_alter_table("federated_participants", schema=None) as batch_op:
        batch_op.drop_column("min_peers")
    # path 8
    with op.batch_alter_table("federated_participants", schema=None) as batch_op:
        batch_op.drop_column("released_at")
    # path 6
    with op.batch_alter_table("federated_jobs", schema=None) as batch_op:
        batch_op.drop_column("public_context_signature")
