"""privacy: what the owner's privacy controls need to remember

Revision ID: 0007_privacy
Revises: 0006_federated_analytics
"""

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import grid_common.db

revision: str = "0007_privacy"
down_revision: str | None = "0006_federated_analytics"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    # path 3 (what streams out before release): the owner's live-metrics setting, fixed at approval
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("live_metrics", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    # path 6 (a dishonest network swapping keys): peers' keys pinned on first introduction
    op.create_table(
        "pinned_peers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("network_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("domain_id", sa.String(length=32), nullable=False),
        sa.Column("encryption_key", sa.String(length=64), nullable=False),
        sa.Column("pinned_at", grid_common.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("network_id", "name"),
    )
    with op.batch_alter_table("pinned_peers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pinned_peers_domain_id"), ["domain_id"], unique=False)
    # path 4 (DP budget across rounds): the epsilon a DP job's accountant actually spent
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("epsilon_spent", sa.Double(), nullable=True))
    # path 5 (a peer reading a peer): the owner's minimum of domains in an aggregate, at filing
    with op.batch_alter_table("federated_participations") as batch:
        batch.add_column(
            sa.Column("min_peers", sa.Integer(), nullable=False, server_default=sa.text("3"))
        )
    # path 8 (the owner's levers): budgets of a network's data scientists, and their spends
    for table in ("privacy_budgets", "privacy_spends"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("network_id", sa.String(length=32), nullable=True))
            batch_op.add_column(sa.Column("scientist", sa.String(length=320), nullable=True))
    _drop_rules_without_a_condition()
    _retire_access_requests()


def downgrade() -> None:
    # path 5
    with op.batch_alter_table("federated_participations") as batch:
        batch.drop_column("min_peers")
    # path 4
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("epsilon_spent")
    # path 6: the pinned peer keys
    with op.batch_alter_table("pinned_peers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pinned_peers_domain_id"))
    op.drop_table("pinned_peers")
    # path 3: the live-metrics setting recorded with each job
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("live_metrics")
    # path 8: the budget columns of a network's data scientists
    for table in ("privacy_spends", "privacy_budgets"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("scientist")
            batch_op.drop_column("network_id")


# path 8: the condition fields of an auto-approval rule (grid_common.schemas.RULE_CONDITIONS as
# of this revision; a migration keeps its own copy so later changes cannot alter what it did).
_CONDITIONS = ("data_scientist", "dataset_tag", "kind", "max_epochs")


def _drop_rules_without_a_condition() -> None:
    """Stored auto-approval rules without a condition approved every request; the settings
    API now refuses them, so they are removed here rather than kept approving (logged). So are
    rules of kind "access": that kind of request can no longer be filed."""
    settings = sa.table("settings", sa.column("key", sa.String()), sa.column("value", sa.JSON()))
    connection = op.get_bind()
    for key, value in connection.execute(sa.select(settings.c.key, settings.c.value)).all():
        rules = (value or {}).get("auto_approval") or []
        kept = [
            r
            for r in rules
            if any(r.get(name) is not None for name in _CONDITIONS) and r.get("kind") != "access"
        ]
        if len(kept) == len(rules):
            continue
        for rule in rules:
            if rule not in kept:
                _log.warning("removed an auto-approval rule: %s", rule)
        connection.execute(
            settings.update()
            .where(settings.c.key == key)
            .values(value={**value, "auto_approval": kept})
        )


def _retire_access_requests() -> None:
    """Plain access requests granted nothing and can no longer be filed; pending ones are
    denied saying so, decided ones stay on record as they were."""
    requests = sa.table(
        "requests",
        sa.column("kind", sa.String()),
        sa.column("status", sa.String()),
        sa.column("decision_reason", sa.Text()),
        sa.column("decided_at", grid_common.db.UtcDateTime(timezone=True)),
    )
    op.get_bind().execute(
        requests.update()
        .where(requests.c.kind == "access", requests.c.status == "pending")
        .values(
            status="denied",
            decided_at=datetime.now(UTC),
            decision_reason="Access requests were removed: an approval granted nothing. "
            "Ask for a job on the dataset instead.",
        )
    )
