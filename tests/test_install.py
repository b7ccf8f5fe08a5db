"""Installing mmtok as a newcomer does: an editable install of a clone named ``mmtok``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _clone(dest: Path) -> Path:
    """A copy of the project files an install needs, in a folder named ``mmtok``."""
    clone = dest / "mmtok"
    clone.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, clone / name)
    skip = shutil.ignore_patterns("assets", "__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "mmtok", clone / "mmtok", ignore=skip)
    return clone


@pytest.mark.slow
def test_import_from_the_folder_that_contains_the_clone(tmp_path):
    """Python puts the current folder first on sys.path, so ``python -c "import mmtok"`` next
    to a clone named ``mmtok`` sees that folder (no ``__init__.py``: a namespace package).
    The installed package must still be the one imported."""
    clone = _clone(tmp_path / "work")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "-e", clone],
                             capture_output=True, text=True)  # fmt: skip
    if install.returncode != 0:  # e.g. no package index to fetch the build backend from
        pytest.skip(f"editable install not possible here: {install.stderr.strip()[-300:]}")
    probe = "import mmtok; print(mmtok.__file__); print(mmtok.list_presets())"
    r = subprocess.run([python, "-c", probe], cwd=clone.parent, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == str(clone / "mmtok" / "__init__.py")
