"""federated participations; requests filed by networks

Revision ID: 0005_federated
Revises: 0004_registry_outbox
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_federated"
down_revision: str | None = "0004_registry_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "federated_participations",
        sa.Column("request_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("network_id", sa.String(length=32), nullable=False),
        sa.Column("network_job_id", sa.Integer(), nullable=False),
        sa.Column("invitation", sa.JSON(), nullable=False),
        sa.Column("decision_reported", sa.Boolean(), nullable=False),
        sa.Column("attested_hash", sa.String(length=64), nullable=True),
        sa.Column("attestation_reported", sa.Boolean(), nullable=False),
        sa.Column("result_uploaded", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("request_id"),
        sa.UniqueConstraint("network_id", "network_job_id"),
    )
    with op.batch_alter_table("privacy_spends", schema=None) as batch_op:
        batch_op.alter_column("user_id", existing_type=sa.INTEGER(), nullable=True)

    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("requester_label", sa.String(length=400), nullable=True))
        batch_op.alter_column("requester_id", existing_type=sa.INTEGER(), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.alter_column("requester_id", existing_type=sa.INTEGER(), nullable=False)
        batch_op.drop_column("requester_label")

    with op.batch_alter_table("privacy_spends", schema=None) as batch_op:
        batch_op.alter_column("user_id", existing_type=sa.INTEGER(), nullable=False)

    op.drop_table("federated_participations")
