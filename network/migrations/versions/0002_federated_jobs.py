"""federated jobs, participants, rounds and updates; the label column in the index

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import grid_common.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("indexed_datasets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("label", sa.String(length=200), nullable=True))
    op.create_table(
        "federated_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("submitter_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("spec_hash", sa.String(length=64), nullable=False),
        sa.Column("model_digest", sa.String(length=64), nullable=False),
        sa.Column("weights_digest", sa.String(length=64), nullable=False),
        sa.Column("parameters", sa.Integer(), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("row_scale", sa.Integer(), nullable=False),
        sa.Column("keys_requested_at", grid_common.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("current_round", sa.Integer(), nullable=False),
        sa.Column("dealer_id", sa.Integer(), nullable=True),
        sa.Column("public_context_digest", sa.String(length=64), nullable=True),
        sa.Column("result_digest", sa.String(length=64), nullable=True),
        sa.Column("final_hash", sa.String(length=64), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("created_at", grid_common.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("started_at", grid_common.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", grid_common.db.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["submitter_id"],
            ["operators.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("federated_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_federated_jobs_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_federated_jobs_submitter_id"), ["submitter_id"], unique=False
        )

    op.create_table(
        "federated_participants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("association_id", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(length=100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("decided_at", grid_common.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("sealed_context_digest", sa.String(length=64), nullable=True),
        sa.Column("samples", sa.Integer(), nullable=True),
        sa.Column("rounds_reported", sa.Integer(), nullable=False),
        sa.Column("attested_hash", sa.String(length=64), nullable=True),
        sa.Column("attested_at", grid_common.db.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["association_id"],
            ["associations.id"],
        ),
        sa.ForeignKeyConstraint(["job_id"], ["federated_jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "association_id"),
    )
    with op.batch_alter_table("federated_participants", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_federated_participants_association_id"), ["association_id"], unique=False
        )

    op.create_table(
        "federated_rounds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("opened_at", grid_common.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("deadline", grid_common.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", grid_common.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("aggregate_digest", sa.String(length=64), nullable=True),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["federated_jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "number"),
    )
    with op.batch_alter_table("federated_rounds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_federated_rounds_status"), ["status"], unique=False)

    op.create_table(
        "federated_updates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("received_at", grid_common.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["federated_participants.id"], ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["round_id"], ["federated_rounds.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("round_id", "participant_id"),
    )


def downgrade() -> None:
    with op.batch_alter_table("indexed_datasets", schema=None) as batch_op:
        batch_op.drop_column("label")
    op.drop_table("federated_updates")
    with op.batch_alter_table("federated_rounds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_federated_rounds_status"))

    op.drop_table("federated_rounds")
    with op.batch_alter_table("federated_participants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_federated_participants_association_id"))

    op.drop_table("federated_participants")
    with op.batch_alter_table("federated_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_federated_jobs_submitter_id"))
        batch_op.drop_index(batch_op.f("ix_federated_jobs_status"))

    op.drop_table("federated_jobs")
