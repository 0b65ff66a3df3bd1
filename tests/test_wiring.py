"""The wiring between workflows and activities: workflows load no activity implementation, store, HTTP
client or database driver; every activity declaration (factory/contracts/activities.py) matches the
implementation registered under its name; the workflow sandbox passes through only factory.contracts."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

from factory.contracts import activities as declared

pytestmark = pytest.mark.fast
ROOT = Path(__file__).resolve().parent.parent


def test_every_activity_declaration_matches_the_implementation_registered_under_its_name():
    """A declaration that drifted from its implementation would schedule an activity with the wrong input."""
    import activities

    impls = {}  # every @activity.defn method of every class in the activities package, by name
    for mod in pkgutil.iter_modules(activities.__path__):
        for _, cls in inspect.getmembers(importlib.import_module(f"activities.{mod.name}"), inspect.isclass):
            for _, f in inspect.getmembers(cls, inspect.isfunction):
                d = getattr(f, "__temporal_activity_definition", None)
                if d is not None:
                    impls[d.name] = f
    decls = {
        f.__temporal_activity_definition.name: f
        for _, f in inspect.getmembers(declared, inspect.isfunction)
        if hasattr(f, "__temporal_activity_definition")
    }
    assert set(decls) == set(impls), set(decls) ^ set(impls)
    for name, d in decls.items():
        want = {k: v for k, v in impls[name].__annotations__.items()}
        assert d.__annotations__ == want, name
    assert len(decls) >= 25


def test_loading_the_workflows_loads_no_activity_store_http_or_database_module():
    code = (
        "import workflows.registry, workflows.task, workflows.agent_session, workflows.step_interpreter, "
        "workflows.memory_service, workflows.scheduled, workflows.singletons; import sys; "
        "print('\\n'.join(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    mods = out.split()
    banned = ("sqlalchemy", "sqlmodel", "httpx", "surrealdb", "activities", "factory.store", "factory.sandbox")
    assert [m for m in mods if m.split(".")[0] in banned or m.startswith(banned)] == []
    assert "workflows.task" in mods and "factory.contracts" in mods  # the import ran


def test_the_sandbox_passes_through_only_the_contracts_beside_the_sdk_defaults():
    from temporalio.worker.workflow_sandbox import SandboxRestrictions

    from temporal.workflow_sandbox import RESTRICTIONS

    extra = set(RESTRICTIONS.passthrough_modules) - set(SandboxRestrictions.default.passthrough_modules)
    assert extra == {"factory.contracts"} and not RESTRICTIONS.passthrough_all_modules
