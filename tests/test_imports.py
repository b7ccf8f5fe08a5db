"""The import graph of mmtok has no cycles, and every module imports on its own.

The graph is read from the source (``ast``): an edge ``a -> b`` for each import of an mmtok
module ``b`` that runs when ``a`` is imported, i.e. statements at module level (including
inside top-level ``try`` / ``if`` blocks) but not under ``if TYPE_CHECKING:`` nor
``if __name__ == "__main__":`` (a script's entry point, never run on import), and not inside
functions (imported on first use). A stricter graph that also counts imports inside functions
and under TYPE_CHECKING (the dependencies a reader sees) may keep only the circles named in
``KNOWN_CIRCLES``, which belong to other parts of issue 18.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mmtok"
# circles through imports inside functions, left to other parts of issue 18:
KNOWN_CIRCLES = [
    # data/prep.py imports ray_engine on first use, ray_engine imports prep's private names:
    # the prep split (plan, rows, shard book, engine table) removes it
    {"mmtok.data.prep", "mmtok.data.ray_engine"},
    # checkpoint.py imports the package __init__ for __version__ (a wrong-way arrow)
    {"mmtok", "mmtok.checkpoint", "mmtok.tokenizer"},
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_main_guard(test: ast.expr) -> bool:
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    )


def _top_level_imports(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """Import statements run on import: module level, through try / if / with blocks."""
    out: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        elif isinstance(node, ast.If):
            if _is_type_checking(node.test) or _is_main_guard(node.test):
                out += _top_level_imports(node.orelse)
            else:
                out += _top_level_imports(node.body) + _top_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                out += _top_level_imports(block)
        elif isinstance(node, ast.With):
            out += _top_level_imports(node.body)
    return out


def _targets(node: ast.Import | ast.ImportFrom, name: str, is_package: bool,
             modules: dict[str, Path]) -> set[str]:  # fmt: skip
    """The mmtok modules an import statement in module ``name`` loads."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in modules}
    base = node.module or ""
    if node.level:  # relative: from the package of ``name``
        package = name.split(".") if is_package else name.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([base] if base else [])])
    found = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules}
    if len(found) < len(node.names) and base in modules:
        found.add(base)  # a name defined in the package / module itself
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        edges = set()
        for node in _top_level_imports(tree.body):
            edges |= _targets(node, name, is_package, modules)
        graph[name] = edges - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_reader_sees_edges_and_cycles():
    graph = import_graph()
    assert "mmtok.train.data" in graph["mmtok.train.config"]
    assert "mmtok.train.modalities" in graph["mmtok.train.config"]
    assert {"mmtok.train.audio", "mmtok.train.image", "mmtok.train.video"} <= graph[
        "mmtok.train.modalities"
    ]
    found = cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert found == [{"a", "b", "c"}]


def test_no_import_cycles_among_mmtok_modules():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in found)


def _all_imports_graph() -> dict[str, set[str]]:
    """Every import statement, in functions and under TYPE_CHECKING too (not ``__main__``)."""
    modules, graph = _modules(), {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        guards = [n for n in tree.body if isinstance(n, ast.If) and _is_main_guard(n.test)]
        skip = {id(n) for g in guards for n in ast.walk(g)}
        nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        is_package = path.name == "__init__.py"
        graph[name] = {t for n in nodes if id(n) not in skip
                       for t in _targets(n, name, is_package, modules)} - {name}  # fmt: skip
    return graph


def test_no_new_circles_through_deferred_imports():
    """The training package's circle (config -> modalities -> <modality> -> config, and the
    held-out CLI through config) stays broken even counting imports inside functions and
    under TYPE_CHECKING; no circle other than the known ones appears."""
    found = cycles(_all_imports_graph())
    assert not [c for c in found if c & {m for m in _modules() if m.startswith("mmtok.train")}]
    new = [c for c in found if c not in KNOWN_CIRCLES]
    assert not new, "import circles: " + "; ".join(" <-> ".join(sorted(c)) for c in new)


def test_every_module_imports_first():
    """Each mmtok module imports in a fresh interpreter state (mmtok.* forgotten before each),
    so no module depends on another having been imported first."""
    names = sorted(n for n in _modules() if not n.endswith("__main__"))
    code = (
        "import importlib, sys\n"
        "bad = []\n"
        f"for name in {names!r}:\n"
        "    for m in [m for m in sys.modules if m == 'mmtok' or m.startswith('mmtok.')]:\n"
        "        del sys.modules[m]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as e:\n"
        "        if 'ray' not in str(e):\n"  # the optional Ray extra may be absent
        "            bad.append(f'{name}: {e!r}')\n"
        "print('\\n'.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=PACKAGE.parent, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
