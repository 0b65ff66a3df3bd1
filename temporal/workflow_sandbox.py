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
off for them. The price is the re-import in each run's first workflow task; the modules' source is compiled
once per process (`_CompiledOnce`), so the price is executing them, not compiling them (bench/PIPELINE.md). Workflows import no activity
implementation, store, HTTP client or database driver (tests/test_workflow_logic.py checks it), so
nothing of that kind could reach a workflow even if this list were wider.
"""

from __future__ import annotations

import hashlib
import importlib.machinery as machinery
import importlib.util
import sys
from types import CodeType
from typing import Any

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PASSTHROUGH = ("factory.contracts",)

RESTRICTIONS = SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)

# the packages whose modules the sandbox re-imports for each run (factory: factory.search_attributes)
REIMPORTED = ("workflows", "factory.domain", "factory")


def _directories() -> list[str]:
    """Their directories as the import system names them (the packages' `__path__`)."""
    found = []
    for package in REIMPORTED:
        spec = importlib.util.find_spec(package)
        found += list(spec.submodule_search_locations or []) if spec is not None else []
    return found


def workflow_runner() -> SandboxedWorkflowRunner:
    """The runner every Factory worker, replayer and workflow test uses."""
    keep_compiled_code()
    return SandboxedWorkflowRunner(restrictions=RESTRICTIONS)


class _CompiledOnce(machinery.SourceFileLoader):
    """A source loader that compiles a given source text once per process.

    The sandbox executes a workflow's modules afresh for every run (above), which is what keeps a run from
    seeing another's state; compiling them again is not. Where Python keeps no bytecode on disk
    (`PYTHONDONTWRITEBYTECODE`, as on the machines Factory is tested on, or a read-only install) every run
    compiled ~100 KB of source: ~15 ms of CPU per task (bench/PIPELINE.md). The code object is keyed by the
    file and a hash of the text just read, so an edited module is compiled anew; its execution is not cached.
    """

    _codes: dict[tuple[str, bytes], CodeType] = {}

    def source_to_code(self, data: Any, path: Any, *args: Any, **kwargs: Any) -> CodeType:  # type: ignore[override]
        key = (str(path), hashlib.blake2b(bytes(data), digest_size=16).digest())
        code = self._codes.get(key)
        if code is None:
            code = super().source_to_code(data, path, *args, **kwargs)
            self._codes[key] = code
        return code


def keep_compiled_code() -> None:
    """Have the modules the sandbox re-imports found by a finder whose source loader is `_CompiledOnce`."""
    loaders = [
        (machinery.ExtensionFileLoader, machinery.EXTENSION_SUFFIXES),
        (_CompiledOnce, machinery.SOURCE_SUFFIXES),
        (machinery.SourcelessFileLoader, machinery.BYTECODE_SUFFIXES),
    ]
    for directory in _directories():
        finder = sys.path_importer_cache.get(directory)
        if getattr(finder, "_factory_compiled_once", False):
            continue
        if finder is not None and not isinstance(finder, machinery.FileFinder):
            continue  # another kind of finder (a zip, say): left as it is
        compiled_once = machinery.FileFinder(directory, *loaders)
        compiled_once._factory_compiled_once = True  # type: ignore[attr-defined]
        sys.path_importer_cache[directory] = compiled_once
