"""What a memory is: the record a task (or a person) leaves, and a search hit on one."""

from __future__ import annotations

from factory.contracts import MemoryHit, MemoryRecord  # noqa: F401 (the wire forms live in factory.contracts)
