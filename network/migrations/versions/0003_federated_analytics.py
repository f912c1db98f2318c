"""federated analytics: a job's kind and resolved plan, jobs without model files, and each
participant's minimum group size

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("federated_jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="training")
        )
        batch_op.add_column(sa.Column("analysis", sa.JSON(), nullable=True))
        batch_op.alter_column("model_digest", existing_type=sa.String(length=64), nullable=True)
        batch_op.alter_column("weights_digest", existing_type=sa.String(length=64), nullable=True)
    with op.batch_alter_table("federated_participants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("min_group_size", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("federated_participants", schema=None) as batch_op:
        batch_op.drop_column("min_group_size")
    with op.batch_alter_table("federated_jobs", schema=None) as batch_op:
        batch_op.alter_column("weights_digest", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("model_digest", existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_column("analysis")
        batch_op.drop_column("kind")
