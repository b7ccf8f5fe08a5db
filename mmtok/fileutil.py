"""Small file helpers shared by the io modules: atomic writes and path checks."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mmtok.errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    The temporary file keeps ``path``'s suffix (or ``suffix``) so libraries that pick the
    format from the extension still work. On any exception the temporary file is removed and
    nothing is left at ``path``.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"output path {str(path)!r}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"output path {str(path)!r}: directory {str(parent)!r} is not writable")
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=f".tmp{suffix or path.suffix}", dir=parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():  # mkstemp makes 0600; give the file the usual umask permissions
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def make_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """mkdir -p ``path``; InputError naming it if it cannot be created."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{what} {str(p)!r} cannot be created: {e.strerror}") from None
    return p


def check_output(dest: str | os.PathLike, inputs: list[str], overwrite: bool = False) -> None:
    """Refuse to write ``dest`` when it is one of ``inputs`` (also through a symlink or a hard
    link: same file on disk) or, unless ``overwrite``, when anything is already there."""
    dest = Path(dest)
    if not (dest.exists() or dest.is_symlink()):
        return
    for src in inputs:
        if dest.exists() and os.path.exists(src) and os.path.samefile(dest, src):
            raise InputError(f"output {str(dest)!r} is the input file {src!r}; "
                             "refusing to replace it")  # fmt: skip
    if dest.is_dir():
        raise InputError(f"output {str(dest)!r} is a folder, expected a file name")
    if not overwrite:
        raise InputError(f"output {str(dest)!r} exists; pass --overwrite to replace it")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def require_file(path: str | os.PathLike, what: str = "input file") -> Path:
    """Return ``path`` as a Path, raising InputError if it is missing, a folder or empty."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} {str(p)!r} does not exist")
    if not p.is_file():
        raise InputError(f"{what} {str(p)!r} is not a regular file")
    if p.stat().st_size == 0:
        raise InputError(f"{what} {str(p)!r} is empty (0 bytes)")
    return p
