"""The Temporal workflow sandbox Factory's workflows run in: what it lets through, and why.

The sandbox re-imports a workflow's modules for each run and checks what they call, so a workflow
that reads a clock, a file or a global from another run fails instead of diverging on replay.
Passed through (imported once, shared by every run, not re-checked) are only modules that hold no
state a run could change and do no I/O:

- the standard library and temporalio, pydantic, pydantic_core, annotated_types (the SDK's defaults;
  the data converter, temporal/client.py, is pydantic-based and runs outside the sandbox);
- `factory.contracts`: the wire dataclasses and activity declarations. They are plain dataclasses;
  passing them through keeps one class per type in the process, which the converter's process-wide
  TypeAdapter cache (temporal/client.py) is keyed by.

Everything else a workflow imports (workflows.*, factory.domain.*, factory.search_attributes) is
re-imported inside the sandbox for every run and checked there: a passed-through module sees the real
`datetime`, `random` and `os`, so passing workflows.* or factory.domain through would switch the checks
off for them. The price is the re-import in each run's first workflow task (bench/PIPELINE.md measured
39-51 ms against 30 ms with every module passed through, on an idle machine). Workflows import no activity
implementation, store, HTTP client or database driver (tests/test_workflow_logic.py checks it), so
nothing of that kind could reach a workflow even if this list were wider.
"""

from __future__ import annotations

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PASSTHROUGH = ("factory.contracts",)

RESTRICTIONS = SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)


def workflow_runner() -> SandboxedWorkflowRunner:
    """The runner every Factory worker, replayer and workflow test uses."""
    return SandboxedWorkflowRunner(restrictions=RESTRICTIONS)
