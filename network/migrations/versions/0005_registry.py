"""registry: the network's outbox and the domains' Ethereum addresses

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import grid_common.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "registry_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("op", sa.String(length=32), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("value_wei", sa.String(length=80), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", grid_common.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("nonce", sa.BigInteger(), nullable=True),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("raw_tx", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("gas_used", sa.BigInteger(), nullable=True),
        sa.Column("sent_at", grid_common.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("confirmed_at", grid_common.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("registry_outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_registry_outbox_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_registry_outbox_tx_hash"), ["tx_hash"], unique=False)
    op.create_table(
        "registry_sender_lease",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("holder", sa.String(length=100), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("associations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("eth_address", sa.String(length=42), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("associations", schema=None) as batch_op:
        batch_op.drop_column("eth_address")
    op.drop_table("registry_sender_lease")
    with op.batch_alter_table("registry_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_registry_outbox_tx_hash"))
        batch_op.drop_index(batch_op.f("ix_registry_outbox_status"))
    op.drop_table("registry_outbox")
