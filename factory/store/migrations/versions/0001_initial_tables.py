"""The initial tables: those `create_all` made from the SQLModel tables before migrations existed.

Revision ID: 0001
Revises:
Create Date: 2026-12-01 06:19:46.291355
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "agentrun",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("agent_type", sa.String(), nullable=False),
        sa.Column("host", sa.String(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("session_id", sa.String(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_output_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_output", sa.String(), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("agentrun", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agentrun_ended_at"), ["ended_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_agentrun_task_id"), ["task_id"], unique=False)

    op.create_table(
        "costentry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agent_run_id", sa.Integer(), nullable=True),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("workflow_run_id", sa.Integer(), nullable=True),
        sa.Column("repo", sa.String(), nullable=False),
        sa.Column("agent_type", sa.String(), nullable=False),
        sa.Column("session_id", sa.String(), nullable=True),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cache_read_tokens", sa.Integer(), nullable=False),
        sa.Column("cache_write_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("day", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("agent_run_id", "model"),
    )
    with op.batch_alter_table("costentry", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_costentry_agent_run_id"), ["agent_run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_costentry_day"), ["day"], unique=False)
        batch_op.create_index(batch_op.f("ix_costentry_repo"), ["repo"], unique=False)
        batch_op.create_index(batch_op.f("ix_costentry_task_id"), ["task_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_costentry_workflow_run_id"), ["workflow_run_id"], unique=False)

    op.create_table(
        "handoff",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workflow_run_id", sa.Integer(), nullable=True),
        sa.Column("from_task_id", sa.Integer(), nullable=True),
        sa.Column("to_task_id", sa.Integer(), nullable=True),
        sa.Column("from_agent", sa.String(), nullable=False),
        sa.Column("to_agent", sa.String(), nullable=True),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("iteration", sa.Integer(), nullable=True),
        sa.Column("output_key", sa.String(), nullable=True),
        sa.Column("summary", sa.String(), nullable=False),
        sa.Column("issues", sa.JSON(), nullable=True),
        sa.Column("verdict", sa.String(), nullable=True),
        sa.Column("changed_files", sa.JSON(), nullable=True),
        sa.Column("diff_stat", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("handoff", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_handoff_workflow_run_id"), ["workflow_run_id"], unique=False)

    op.create_table(
        "keyvalue",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("keyvalue", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_keyvalue_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("workflow_run_id", sa.Integer(), nullable=True),
        sa.Column("sender", sa.String(), nullable=False),
        sa.Column("recipient", sa.String(), nullable=True),
        sa.Column("content", sa.String(), nullable=False),
        sa.Column("message_type", sa.String(), nullable=False),
        sa.Column("reply_to", sa.Integer(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_message_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_message_message_type"), ["message_type"], unique=False)
        batch_op.create_index(batch_op.f("ix_message_reply_to"), ["reply_to"], unique=False)
        batch_op.create_index(batch_op.f("ix_message_task_id"), ["task_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_message_workflow_run_id"), ["workflow_run_id"], unique=False)

    op.create_table(
        "question",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("workflow_run_id", sa.Integer(), nullable=True),
        sa.Column("text", sa.String(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=True),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answer", sa.String(), nullable=True),
        sa.Column("answered_by", sa.String(), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("telegram_message_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("question", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_question_task_id"), ["task_id"], unique=False)

    op.create_table(
        "task",
        sa.Column("title", sa.String(), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("repo", sa.String(), nullable=False),
        sa.Column("agent_type", sa.String(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("branch", sa.String(), nullable=True),
        sa.Column("base_branch", sa.String(), nullable=True),
        sa.Column("pr_url", sa.String(), nullable=True),
        sa.Column("pr_number", sa.Integer(), nullable=True),
        sa.Column("pr_state", sa.String(), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("result", sa.String(), nullable=True),
        sa.Column("note", sa.String(), nullable=True),
        sa.Column("session_id", sa.String(), nullable=True),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("num_turns", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(), nullable=True),
        sa.Column("workflow_run_id", sa.Integer(), nullable=True),
        sa.Column("workflow_step", sa.Integer(), nullable=True),
        sa.Column("iteration", sa.Integer(), nullable=True),
        sa.Column("parent_task_id", sa.Integer(), nullable=True),
        sa.Column("plane_issue_id", sa.String(), nullable=True),
        sa.Column("preview_url", sa.String(), nullable=True),
        sa.Column("changed_files", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_task_branch"), ["branch"], unique=False)
        batch_op.create_index(batch_op.f("ix_task_plane_issue_id"), ["plane_issue_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_task_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_task_workflow_run_id"), ["workflow_run_id"], unique=False)

    op.create_table(
        "tasklog",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("content", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("tasklog", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tasklog_task_id"), ["task_id"], unique=False)

    op.create_table(
        "webhookdelivery",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhookdelivery", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhookdelivery_received_at"), ["received_at"], unique=False)

    op.create_table(
        "workflowrun",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("title", sa.String(), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("repo", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("current_step", sa.Integer(), nullable=True),
        sa.Column("current_agent", sa.String(), nullable=True),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("branch", sa.String(), nullable=True),
        sa.Column("pr_url", sa.String(), nullable=True),
        sa.Column("pr_number", sa.Integer(), nullable=True),
        sa.Column("pr_state", sa.String(), nullable=True),
        sa.Column("approved", sa.Boolean(), nullable=True),
        sa.Column("note", sa.String(), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("plane_issue_id", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("workflowrun", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_workflowrun_branch"), ["branch"], unique=False)
        batch_op.create_index(batch_op.f("ix_workflowrun_status"), ["status"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("workflowrun", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workflowrun_status"))
        batch_op.drop_index(batch_op.f("ix_workflowrun_branch"))

    op.drop_table("workflowrun")
    op.drop_table("costentry")
    with op.batch_alter_table("webhookdelivery", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhookdelivery_received_at"))

    op.drop_table("webhookdelivery")
    with op.batch_alter_table("tasklog", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tasklog_task_id"))

    op.drop_table("tasklog")
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_workflow_run_id"))
        batch_op.drop_index(batch_op.f("ix_task_status"))
        batch_op.drop_index(batch_op.f("ix_task_plane_issue_id"))
        batch_op.drop_index(batch_op.f("ix_task_branch"))

    op.drop_table("task")
    with op.batch_alter_table("question", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_question_task_id"))

    op.drop_table("question")
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_workflow_run_id"))
        batch_op.drop_index(batch_op.f("ix_message_task_id"))
        batch_op.drop_index(batch_op.f("ix_message_reply_to"))
        batch_op.drop_index(batch_op.f("ix_message_message_type"))
        batch_op.drop_index(batch_op.f("ix_message_created_at"))

    op.drop_table("message")
    with op.batch_alter_table("keyvalue", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_keyvalue_updated_at"))

    op.drop_table("keyvalue")
    with op.batch_alter_table("handoff", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_handoff_workflow_run_id"))

    op.drop_table("handoff")
    with op.batch_alter_table("agentrun", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agentrun_task_id"))
        batch_op.drop_index(batch_op.f("ix_agentrun_ended_at"))

    op.drop_table("agentrun")
