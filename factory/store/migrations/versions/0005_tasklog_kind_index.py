"""An index on a task's log lines by kind (`ix_tasklog_task_id_kind`): a live page counts the tool calls of its
round every 0.5 s, which without it read every line of the task (4.2 against 0.35 ms for 20,000 lines here).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 22:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasklog", schema=None) as batch_op:
        batch_op.create_index("ix_tasklog_task_id_kind", ["task_id", "kind"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tasklog", schema=None) as batch_op:
        batch_op.drop_index("ix_tasklog_task_id_kind")
