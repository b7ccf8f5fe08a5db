"""Every ```python and ```sh block in docs/*.md and README.md runs, in page order.

The blocks of a page run in one fresh folder (with ``recipes/`` linked in) and its python
blocks share a namespace. A ```sh block holds ``mmtok ...`` command lines (``#`` comments and
``\\`` continuations allowed); they run one after another in a subprocess through
``mmtok.cli.main``, the function the ``mmtok`` entry point calls, and each must exit 0.
```bash blocks are illustrative (installs, clusters, long jobs) and are not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
SH_RUNNER = """
import shlex, sys
from mmtok.cli import main
for line in sys.argv[1].replace("\\\\\\n", " ").splitlines():
    argv = shlex.split(line, comments=True)
    if not argv:
        continue
    if argv[0] != "mmtok":
        sys.exit(f"not an mmtok command: {line}")
    print("$", line, flush=True)
    code = main(argv[1:])
    if code:
        sys.exit(f"exit code {code}: {line}")
"""


def _blocks(page: Path) -> list[tuple[str, str]]:
    """(language, code) of the page's python and sh blocks, in order."""
    return re.findall(r"```(python|sh)\n(.*?)```", page.read_text(), flags=re.S)


def _run_sh(code: str, where: str, cwd: Path) -> None:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "HF_HOME": str(cwd / ".hf"),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", SH_RUNNER, code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, f"{where} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"


@pytest.fixture
def one_thread():
    """The examples are tiny: one thread is fastest, and far faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p)], ids=lambda p: p.name)
def test_page_examples_run(page, tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(tmp_path)
    for name, value in (("HF_HOME", str(tmp_path / ".hf")), ("HF_HUB_OFFLINE", "1"),
                        ("HF_DATASETS_OFFLINE", "1")):  # fmt: skip
        monkeypatch.setenv(name, value)
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    namespace = {"__name__": "__main__"}
    for i, (lang, block) in enumerate(_blocks(page)):
        where = f"{page.name}:block{i}"
        if lang == "sh":
            _run_sh(block, where, tmp_path)
        else:
            exec(compile(block, where, "exec", dont_inherit=True), namespace)
