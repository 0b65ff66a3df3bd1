"""The layers reach only downwards: api → temporal → workflows → activities → factory (the core).

`factory/cli.py` is the composition root: it may import every layer, and nothing imports it.
`docker_toolkit` runs inside agents' sandboxes: it imports nothing of Factory's.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["factory", "activities", "workflows", "temporal", "api"]  # bottom to top
ROOT_MODULE = "factory.cli"


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
    return found


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


@pytest.mark.parametrize("layer", LAYERS)
def test_no_product_module_is_over_400_lines(layer):
    long = [f"{p.relative_to(ROOT)}: {n}" for p in _sources(layer) if (n := len(p.read_text().splitlines())) > 400]
    assert long == []


def test_the_task_workflow_reads_in_under_250_lines():
    assert len((ROOT / "workflows" / "task.py").read_text().splitlines()) < 250
