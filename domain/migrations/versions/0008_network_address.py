"""network address: the Ethereum address a network gave at join, to check its chain jobs

Revision ID: 0008_network_address
Revises: 0007_privacy
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_network_address"
down_revision: str | None = "0007_privacy"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A domain stakes and attests only on chain jobs this address coordinates; memberships
    # from before it have none and attest nothing on chain until the domain joins again.
    with op.batch_alter_table("network_memberships") as batch:
        batch.add_column(sa.Column("eth_address", sa.String(length=42), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("network_memberships") as batch:
        batch.drop_column("eth_address")
