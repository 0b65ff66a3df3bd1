"""The layers reach only downwards: api → temporal → workflows → activities → factory (the core).

`factory/cli.py` is the composition root: it may import every layer, and nothing imports it.
`docker_toolkit` runs inside agents' sandboxes: it imports nothing of Factory's.

Inside the core the packages have an order too (`CORE`, bottom to top): the words every layer
shares, then the ports' types, the store, the host-facing packages, the specs, the task service
and the integrations. A package imports only from its own rank or below, no two core packages
import each other (directly or round a longer loop), and no module imports relatively (a relative
import hides which package it reaches, so the checks above could not see it).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast  # unit tests: no Temporal, no CLI

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["factory", "activities", "workflows", "temporal", "api"]  # bottom to top
ROOT_MODULE = "factory.cli"
CORE = [  # factory's packages and top modules, bottom to top; one rank may hold several
    {"contracts", "config_sections", "search_attributes", "processes", "preflight"},  # plain data and helpers
    {"startup"},  # how the long-running processes start and end (it starts children with processes.py)
    {"domain", "config"},  # pure rules over the contracts; config.yml
    {"launcher"},  # the launcher port's types (factory/domain/lifecycle.py re-exported)
    {"store"},  # the tables and their reads and writes
    {"git", "sandbox", "memory", "environments", "evidence"},  # what touches the host: git, bubblewrap, memory, Docker
    {"backends"},  # the agent CLIs (Claude Code, Codex, OpenCode): their command lines, events, routes
    {"specs"},  # from config.yml to workflow inputs
    {"tasks"},  # the task service: the lifecycle and its state rules
    {"integrations", "auth"},  # Plane, Telegram, GitHub: they call the launcher port; people, sign-in, roles
    {"doctor"},  # `factory doctor`: checks every part, so it sits above them all
]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, at any depth (function-level imports included)."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            # `from factory import store` names a package, not a module of `factory`
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names if node.module == "factory"]
    return found


def relative_imports(roots: list[str]) -> list[str]:
    bad = []
    for package in roots:
        for path in _sources(package):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and node.level > 0:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports relatively")
    return bad


def _core_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "factory" and len(parts) > 1 else None


def core_edges() -> dict[str, dict[str, str]]:
    """Core package -> {core package it imports: the first place it does}, the composition root left out."""
    edges: dict[str, dict[str, str]] = {}
    for path in _sources("factory"):
        src = _core_of(_module_name(path))
        if src is None or _module_name(path) == ROOT_MODULE:
            continue
        for line, imported in _imports(path):
            dst = _core_of(imported)
            if dst is not None and dst != src:
                edges.setdefault(src, {}).setdefault(dst, f"{path.relative_to(ROOT)}:{line}")
    return edges


def core_order_breaks() -> list[str]:
    rank = {name: i for i, names in enumerate(CORE) for name in names}
    bad = []
    for src, dsts in sorted(core_edges().items()):
        if src not in rank:
            bad.append(f"factory/{src} has no place in CORE (add it to tests/test_layers.py)")
            continue
        for dst, where in sorted(dsts.items()):
            if dst not in rank:
                bad.append(f"factory/{dst} has no place in CORE (add it to tests/test_layers.py)")
            elif rank[dst] > rank[src]:
                bad.append(f"{where}: factory/{src} imports factory/{dst}, a package above it")
    return bad


def core_cycles() -> list[list[str]]:
    """Every loop of imports between core packages, each as the packages round it (found by depth-first search)."""
    edges = {src: sorted(dsts) for src, dsts in core_edges().items()}
    found: set[tuple[str, ...]] = set()

    def walk(node: str, path: list[str]) -> None:
        for nxt in edges.get(node, []):
            if nxt == path[0]:
                at = path.index(min(path))  # one spelling per loop: start it at its smallest name
                found.add(tuple(path[at:] + path[:at]))
            elif nxt not in path and nxt > path[0]:
                walk(nxt, path + [nxt])

    for start in sorted(edges):
        walk(start, [start])
    return [list(c) for c in sorted(found)]


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def upward_imports() -> list[str]:
    bad = []
    for rank, layer in enumerate(LAYERS):
        for path in _sources(layer):
            name = _module_name(path)
            for line, imported in _imports(path):
                top = imported.split(".")[0]
                if imported == ROOT_MODULE or imported.startswith(ROOT_MODULE + "."):
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports the composition root {imported}")
                elif name != ROOT_MODULE and top in LAYERS and LAYERS.index(top) > rank:
                    bad.append(f"{path.relative_to(ROOT)}:{line} ({layer}) imports {imported} ({top}, a layer above)")
    for path in _sources("docker_toolkit"):
        for line, imported in _imports(path):
            if imported.split(".")[0] in LAYERS:
                bad.append(f"{path.relative_to(ROOT)}:{line} (docker_toolkit) imports {imported}")
    return bad


def test_no_module_imports_a_layer_above_its_own():
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The checker itself finds a planted violation (so the test above can fail)."""
    fake = tmp_path / "factory"
    fake.mkdir()
    (fake / "bad.py").write_text("def f():\n    from api.main import create_app\n    return create_app\n")
    for layer in LAYERS[1:] + ["docker_toolkit"]:
        (tmp_path / layer).mkdir()
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert upward_imports() == ["factory/bad.py:2 (factory) imports api.main (api, a layer above)"]


def test_core_packages_import_only_their_rank_and_below():
    assert core_order_breaks() == []


def test_no_two_core_packages_import_each_other():
    assert core_cycles() == []


def test_no_module_imports_relatively():
    assert relative_imports(LAYERS + ["docker_toolkit", "tests"]) == []


def test_the_core_checks_see_a_planted_cycle_an_upward_import_and_a_relative_one(tmp_path, monkeypatch):
    """The checkers find what they are for (so the three tests above can fail)."""
    core = tmp_path / "factory"
    for pkg in ("store", "launcher", "tasks"):
        (core / pkg).mkdir(parents=True)
    (core / "store" / "views.py").write_text("from factory.launcher.x import NotFound\n")
    (core / "launcher" / "x.py").write_text("def f():\n    from factory.store import views\n")
    (core / "store" / "up.py").write_text("from factory.tasks.service import TaskService\n")
    (core / "tasks" / "rel.py").write_text("from .service import TaskService\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert core_cycles() == [["launcher", "store"]]
    assert core_order_breaks() == [
        "factory/launcher/x.py:2: factory/launcher imports factory/store, a package above it",
        "factory/store/up.py:1: factory/store imports factory/tasks, a package above it",
    ]
    assert relative_imports(["factory"]) == ["factory/tasks/rel.py:1 imports relatively"]


@pytest.mark.parametrize("layer", LAYERS)
def test_no_product_module_is_over_400_lines(layer):
    long = [f"{p.relative_to(ROOT)}: {n}" for p in _sources(layer) if (n := len(p.read_text().splitlines())) > 400]
    assert long == []


def test_the_task_workflow_reads_in_under_250_lines():
    assert len((ROOT / "workflows" / "task.py").read_text().splitlines()) < 250
