"""network membership

Revision ID: 0003_network_membership
Revises: 0002_jobs_and_workers
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import domain.models

revision: str = "0003_network_membership"
down_revision: str | None = "0002_jobs_and_workers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "network_memberships",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("network_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("signing_key", sa.String(length=64), nullable=False),
        sa.Column("encryption_key", sa.String(length=64), nullable=False),
        sa.Column("domain_url", sa.String(length=2000), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("association_id", sa.Integer(), nullable=True),
        sa.Column("requested_at", domain.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("next_sync_at", domain.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_push_at", domain.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_push_digest", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("network_id"),
    )
    with op.batch_alter_table("network_memberships", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_network_memberships_next_sync_at"), ["next_sync_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("network_memberships", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_network_memberships_next_sync_at"))
    op.drop_table("network_memberships")
