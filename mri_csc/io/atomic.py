"""Atomic, no-clobber file writing.

Every writer in :mod:`mri_csc.io` goes through :func:`atomic_path`: the data is
written to a hidden temporary file in the destination folder and moved into
place with :func:`os.replace` only once it is complete, so an interrupted run
never leaves a half-written file posing as a result. A file that already
exists is refused unless ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["OutputExistsError", "check_writable", "atomic_path", "atomic_paths"]

# mkstemp creates files readable by their owner only; outputs get the mode an ordinary
# open() would give them (0666 less the process umask), read once at import.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


class OutputExistsError(FileExistsError):
    """Raised when an output exists and ``overwrite`` was not given."""


def check_writable(path: "str | os.PathLike", overwrite: bool = False) -> Path:
    """Check that ``path`` may be written: refuse an existing file unless ``overwrite``.

    Raises
    ------
    OutputExistsError
        When ``path`` exists and ``overwrite`` is false.
    FileNotFoundError
        When the destination folder does not exist.
    """
    p = Path(path)
    if p.exists() and not overwrite:
        raise OutputExistsError(f"{p}: output exists; pass overwrite=True (--force on the command line) "
                                "to replace it")
    if not p.parent.exists():
        raise FileNotFoundError(f"{p}: folder {p.parent} does not exist")
    return p


@contextlib.contextmanager
def atomic_paths(paths, overwrite: bool = False):
    """Yield temporary paths (same folders, same suffixes) for ``paths``; move them in place on success.

    All destinations are checked before anything is written. On an exception
    (including ``KeyboardInterrupt``) the temporary files are removed and no
    destination is touched.
    """
    dests = [check_writable(p, overwrite) for p in paths]
    temps = []
    try:
        for d in dests:
            fd, tmp = tempfile.mkstemp(prefix=f".{d.name}.", suffix=".part" + "".join(d.suffixes[-2:]),
                                       dir=d.parent)
            os.close(fd)
            os.chmod(tmp, _FILE_MODE)
            temps.append(Path(tmp))
        yield temps
        for tmp, d in zip(temps, dests):
            os.replace(tmp, d)
    finally:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


@contextlib.contextmanager
def atomic_path(path, overwrite: bool = False):
    """Single-file form of :func:`atomic_paths`."""
    with atomic_paths([path], overwrite) as (tmp,):
        yield tmp
