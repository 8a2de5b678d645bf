"""The shape of the package, held to what the README's Layout promises: no import cycles, no core
module reaching up to the package's front door, small modules and classes, and generation that
never loads the training loop."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import charforge

ROOT = Path(charforge.__file__).parent
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 200


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the charforge modules it imports, anywhere in its code (lazy imports too)."""
    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {owner(a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else owner(node.module)
                            for a in node.names}
        graph[name] = {t for t in targets if t and t != name}
    return graph


def test_no_import_cycles_among_charforge_modules():
    graph = _imports(_modules())
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, [" -> ".join(c) for c in cycles]


def test_no_core_module_imports_the_package_front_door():
    graph = _imports(_modules())
    assert [name for name, targets in graph.items() if "charforge" in targets] == []


def test_modules_and_classes_are_small_or_say_why():
    too_long = []
    for name, path in _modules().items():
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        doc = ast.get_docstring(tree) or ""
        if len(source.splitlines()) > MAX_MODULE_LINES and f"{MAX_MODULE_LINES} lines" not in doc:
            too_long.append(f"{name}: {len(source.splitlines())} lines")
        for node in ast.walk(tree):
            size = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            if isinstance(node, ast.ClassDef) and size > MAX_CLASS_LINES and not (
                    node.name in doc and "200 lines" in doc):
                too_long.append(f"{name}.{node.name}: {size} lines")
    assert not too_long, too_long


def test_every_module_says_what_it_holds():
    assert [name for name, path in _modules().items()
            if not ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))] == []


def test_sampling_and_loading_never_import_the_trainer(train, tmp_path):
    """``charforge sample RUN`` and ``charforge.load(RUN)`` load a model without the training loop."""
    run = train(steps=2).run_dir
    code = (
        "import json, sys\n"
        "import charforge\n"
        "from charforge.cli import cli\n"
        f"model = charforge.load({str(run)!r}, device='cpu')\n"
        f"cli(['sample', {str(run)!r}, '--length', '5', '--seed', '1'], standalone_mode=False)\n"
        "print()\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('charforge.'))))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "charforge.sampling.loading" in loaded
    assert not [m for m in loaded if m in ("charforge.trainer", "charforge.data")], loaded
