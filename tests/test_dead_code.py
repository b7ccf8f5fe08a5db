"""No dead code in mmtok: every function, class, method and constant the package defines is
used by the package, a benchmark, a recipe or data script, or named in the docs (a name only
the tests use is dead: tests check what the package does, they are not its callers).

Names are matched as whole words, so a method counts as used when any object's method of that
name is; functions registered by a decorator (loss terms) are used through their registry.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CODE = ("mmtok", "benchmarks", "recipes", "data_scripts")


def _definitions(path: Path) -> list[str]:
    """Top-level undecorated functions, classes, UPPER_CASE constants; methods of classes."""
    names = []
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.decorator_list:
            names.append(node.name)
        if isinstance(node, ast.ClassDef):
            methods = [m for m in node.body if isinstance(m, ast.FunctionDef)]
            names += [m.name for m in methods if not m.name.startswith("__")]
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names += [t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper()]
    return names


def test_every_definition_is_used_outside_the_tests():
    code = "\n".join(p.read_text() for d in CODE for p in sorted((REPO / d).rglob("*.py")))
    docs = "\n".join(p.read_text() for p in [REPO / "README.md", *(REPO / "docs").rglob("*.md")])
    dead = []
    for path in sorted((REPO / "mmtok").rglob("*.py")):
        for name in _definitions(path):
            word = re.compile(rf"\b{re.escape(name)}\b")
            if len(word.findall(code)) < 2 and not word.search(docs):
                dead.append(f"{path.relative_to(REPO)}: {name}")
    assert not dead, "defined but never used outside the tests: " + ", ".join(dead)
