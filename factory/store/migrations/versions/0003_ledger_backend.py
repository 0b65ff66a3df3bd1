"""The agent CLI (claude, codex, opencode): of each ledger row (`costentry.backend`) and asked for by a task (`task.backend`).

Rows written before this have none (NULL): they were all Claude Code's.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 16:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("costentry", schema=None) as batch_op:
        batch_op.add_column(sa.Column("backend", sa.String(), nullable=True))
        batch_op.create_index(batch_op.f("ix_costentry_backend"), ["backend"], unique=False)
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.add_column(sa.Column("backend", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.drop_column("backend")
    with op.batch_alter_table("costentry", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_costentry_backend"))
        batch_op.drop_column("backend")
