"""The search attributes Factory sets on its workflows (shown and filterable in the Temporal web UI)."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

TASK_ID = SearchAttributeKey.for_int("TaskId")
REPO = SearchAttributeKey.for_keyword("Repo")
AGENT_TYPE = SearchAttributeKey.for_keyword("AgentType")
STAGE = SearchAttributeKey.for_keyword("Stage")
SEARCH_ATTRIBUTES = [TASK_ID, REPO, AGENT_TYPE, STAGE]


def kind_name(key: SearchAttributeKey) -> str:
    """The type name the server knows the key by ("Int", "Keyword"), as `temporal --search-attribute` wants it."""
    return key.indexed_value_type.name.title()
