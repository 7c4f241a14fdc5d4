"""Atomic, no-clobber file writing.

Every writer in :mod:`mri_csc.io` goes through :func:`atomic_paths`: the data is
written to hidden temporary files in the destination folders and moved into
place only once every file is complete, so an interrupted run never leaves a
half-written file posing as a result. A file that already exists -- or a
symbolic link, even a dangling one -- is refused unless ``overwrite=True``.

Several outputs (a ``.cfl`` and its ``.hdr``, the magnitude and phase NIfTI
volumes) are committed together: all are written, then all are renamed into
place; when a rename fails, the ones already moved are put back (the files they
replaced are restored from a hidden backup), so the set is never half old, half
new.

Temporary names carry the writing host and process (``.<name>.<host>-<pid>.<random>.part…``).
A run killed by ``SIGKILL`` cannot clean up after itself; the next write into
the same folder removes the temporaries of processes that no longer exist and
puts back a backup whose destination is missing (:func:`sweep_stale`).
``SIGTERM`` is turned into a normal exception by the command line, so ordinary
clean-up runs then.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
import zlib
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None

__all__ = ["OutputExistsError", "check_writable", "atomic_path", "atomic_paths", "commit_files", "sweep_stale",
           "temp_dir", "temp_prefix", "pid_alive", "run_lock"]

_log = logging.getLogger(__name__)
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)\.[^.]+\.(?P<kind>part|partial|bak)\b")
_HOST = f"{zlib.crc32(socket.gethostname().encode()):08x}"


class OutputExistsError(FileExistsError):
    """Raised when an output exists and ``overwrite`` was not given."""


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_prefix(name: str) -> str:
    """The hidden prefix of this process's temporaries for ``name``: ``.<name>.<host>-<pid>.``.

    ``host`` is a CRC-32 of the host name, so that a sweep never removes the
    temporaries of a live process on another machine sharing the folder.
    """
    return f".{name}.{_HOST}-{os.getpid()}."


def _create_temp(dest: Path, suffix: str, made: list, make) -> Path:
    """Create this process's temporary ``.<dest.name>.<host>-<pid>.<random><suffix>`` beside ``dest``.

    The name is appended to ``made`` *before* ``make(path)`` creates it, so a
    clean-up over ``made`` also covers a signal (``SIGTERM``, Ctrl-C) that
    lands just after the creation: ``tempfile.mkstemp``/``mkdtemp`` leave a
    window between creating the entry and returning its name, in which an
    exception leaks it. ``make`` must fail with ``FileExistsError`` when the
    entry exists (``O_EXCL``, ``mkdir``); a clash draws another name.
    """
    for _ in range(100):
        path = dest.parent / f"{temp_prefix(dest.name)}{secrets.token_hex(4)}{suffix}"
        made.append(path)
        try:
            make(path)
            return path
        except FileExistsError:
            made.pop()  # not ours: leave it alone
    raise FileExistsError(f"{dest.parent}: no free temporary name for {dest.name}")


def _make_file(path: Path) -> None:
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # the mode open() gives, less the umask


def _make_dir(path: Path) -> None:
    path.mkdir()


@contextlib.contextmanager
def temp_dir(dest: "str | os.PathLike"):
    """A hidden temporary folder ``.<name>.<host>-<pid>.<random>.partial`` beside ``dest``, removed on exit.

    The folder is removed on any exit, normal or not, however late an
    interrupt lands; a caller that renamed it into place (to ``dest``) leaves
    nothing to remove. :func:`sweep_stale` removes the folders of killed
    processes.
    """
    made: list[Path] = []
    try:
        yield _create_temp(Path(dest), ".partial", made, _make_dir)
    finally:
        for p in made:
            shutil.rmtree(p, ignore_errors=True)


def sweep_stale(folder: "str | os.PathLike") -> list[Path]:
    """Clean up after dead processes: remove their ``.part*``/``.partial`` temporaries, restore their backups.

    A backup ``.<name>.<host>-<pid>.<random>.bak`` is what a ``--force`` write
    moved aside before renaming the new file in; a process killed between the
    two renames leaves the backup and no ``<name>``, so the backup is renamed
    back to ``<name>`` (the old result survives). A backup whose ``<name>``
    exists (the new file was committed) is removed. Temporaries of live
    processes (another run writing into the same folder) are left alone.

    Returns the paths removed or restored (their temporary names).
    """
    removed = []
    folder = Path(folder)
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _TEMP_RE.match(p.name)
        if not m or m.group("host") != _HOST or pid_alive(int(m.group("pid"))):
            continue
        with contextlib.suppress(OSError):
            if m.group("kind") == "bak":
                dest = folder / m.group("name")
                if not (dest.exists() or dest.is_symlink()):
                    os.rename(p, dest)
                    _log.warning("%s: restored from the backup %s left by a killed process", dest, p.name)
                    removed.append(p)
                    continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
    return removed


def check_writable(path: "str | os.PathLike", overwrite: bool = False) -> Path:
    """Check that ``path`` may be written: refuse an existing file (or any symlink) unless ``overwrite``.

    Raises
    ------
    OutputExistsError
        When ``path`` exists, or is a symbolic link (dangling or not), and ``overwrite`` is false.
    FileNotFoundError
        When the destination folder does not exist.
    PermissionError
        When no file can be created in it (read-only folder or file system).
    """
    p = Path(path)
    if (p.exists() or p.is_symlink()) and not overwrite:
        what = "is a dangling symbolic link" if p.is_symlink() and not p.exists() else "exists"
        raise OutputExistsError(f"{p}: output {what}; pass overwrite=True (--force on the command line) "
                                "to replace it")
    if p.is_dir() and not p.is_symlink():
        raise IsADirectoryError(f"{p}: output is a folder")
    if not p.parent.exists():
        raise FileNotFoundError(f"{p}: folder {p.parent} does not exist")
    _check_folder_writable(p)
    return p


def _check_folder_writable(p: Path) -> None:
    """Create and remove a temporary beside ``p`` (this process's, swept like the others if a kill leaves it):
    a read-only folder or file system is refused now, not after the reconstruction (root ignores permission
    bits, so they cannot tell). Other errors (a full disk) keep their type, the message naming ``p``."""
    import errno  # noqa: PLC0415

    made: list = []
    try:
        _create_temp(p, ".probe", made, _make_file)
    except OSError as e:
        kind = PermissionError if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else type(e)
        raise kind(f"{p}: cannot write to folder {p.parent} ({e.strerror or e})") from None
    finally:
        for path in made:
            path.unlink(missing_ok=True)


def commit_files(pairs, overwrite: bool = False) -> None:
    """Rename each finished temporary ``tmp`` to ``dest`` for ``(tmp, dest)`` in ``pairs``, as one set.

    1. Every ``dest`` is checked with :func:`check_writable` (an existing one,
       or any symlink, is refused unless ``overwrite``) before anything moves.
    2. With ``overwrite``, each existing ``dest`` is renamed to a hidden backup
       ``.<name>.<host>-<pid>.<random>.bak`` in the same folder.
    3. Each ``tmp`` is renamed to its ``dest``; without ``overwrite`` a
       ``dest`` that appeared since step 1 is refused (``OutputExistsError``).
    4. On success the backups are deleted. On any exception (including
       ``KeyboardInterrupt``) the ``dest`` files renamed in step 3 are deleted,
       the backups renamed back to their ``dest``, and the exception re-raised;
       the temporaries are left to the caller (:func:`atomic_paths` removes them).

    Each rename is atomic, the set is not: a process killed by ``SIGKILL``
    between steps 2 and 4 leaves backups, which the next :func:`sweep_stale`
    of the folder renames back where their ``dest`` is missing.
    """
    pairs = [(Path(t), Path(d)) for t, d in pairs]
    for _, d in pairs:
        check_writable(d, overwrite)
    backups: list[tuple[Path, Path]] = []
    moved: list[Path] = []
    try:
        for _, d in pairs:
            if d.exists() or d.is_symlink():
                b = Path(tempfile.mktemp(prefix=temp_prefix(d.name), suffix=".bak", dir=d.parent))
                os.replace(d, b)
                backups.append((b, d))
        for t, d in pairs:
            if not overwrite and (d.exists() or d.is_symlink()):
                raise OutputExistsError(f"{d}: output appeared while this run was writing; not replaced")
            os.replace(t, d)
            moved.append(d)
    except BaseException:
        for d in moved:
            with contextlib.suppress(OSError):
                d.unlink()
        for b, d in backups:
            with contextlib.suppress(OSError):
                os.replace(b, d)
        raise
    for b, _ in backups:
        with contextlib.suppress(OSError):
            b.unlink()


def _lock_owner(lock: Path) -> tuple[str, int]:
    """The ``(host, pid)`` written in a lock file (``<pid> <host>``); pid -1 when unreadable or not yet written."""
    try:
        parts = lock.read_text().split()
        return (parts[1] if len(parts) > 1 else "?"), int(parts[0])
    except (OSError, ValueError, IndexError):
        return "?", -1


def _busy(out_dir: Path, lock: Path, host: str, pid: int) -> OutputExistsError:
    who = f"pid {pid} on {host}" if pid > 0 else "a process that is starting"
    return OutputExistsError(f"{out_dir}: another run ({who}) is writing this folder; wait for it "
                             f"or choose another --out (lock {lock})")


@contextlib.contextmanager
def run_lock(out_dir: "str | os.PathLike"):
    """Own ``out_dir`` (an ``eval`` run folder, a ``batch`` output folder): an exclusive ``.<name>.lock`` beside it.

    On POSIX the lock is an ``fcntl.flock`` held on ``.<name>.lock`` for the
    whole run, so the kernel releases it when the process ends, however it
    ends; the file records ``<pid> <host>`` for the refusal message only. A
    second run on the same folder is refused while the first holds it.
    Without ``fcntl`` the file is created exclusively instead and the lock of
    a process that no longer exists on this host is taken over.
    """
    out_dir = Path(out_dir)
    lock = out_dir.parent / f".{out_dir.name}.lock"
    me = f"{os.getpid()} {socket.gethostname()}\n".encode()
    if fcntl is None:
        yield from _excl_lock(out_dir, lock, me)
        return
    while True:
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise _busy(out_dir, lock, *_lock_owner(lock)) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file between our open and flock: lock the new one
    try:
        host, pid = _lock_owner(lock)
        if pid > 0:
            _log.warning("%s: taking over the lock of process %s on %s, which no longer holds it", out_dir, pid, host)
        os.ftruncate(fd, 0)
        os.write(fd, me)
        yield lock
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()  # before unlocking, so that a waiter re-checks the inode
        os.close(fd)


def _excl_lock(out_dir: Path, lock: Path, me: bytes):
    """Fallback of :func:`run_lock` without ``fcntl``: an ``O_EXCL`` file holding ``<pid> <host>``."""
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            host, pid = _lock_owner(lock)
            young = False
            with contextlib.suppress(OSError):
                young = time.time() - lock.stat().st_mtime < 30
            if pid < 0:
                busy = young  # empty and recent: its owner is still writing the pid
            else:
                busy = host not in ("?", socket.gethostname()) or (pid_alive(pid) and pid != os.getpid())
            if busy:
                raise _busy(out_dir, lock, host, pid) from None
            _log.warning("%s: removing the stale lock of process %s, which no longer runs", out_dir, pid)
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
    else:
        raise OutputExistsError(f"{out_dir}: cannot take the lock {lock}")
    try:
        os.write(fd, me)
        os.close(fd)
        yield lock
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


@contextlib.contextmanager
def atomic_paths(paths, overwrite: bool = False):
    """Yield temporary paths (same folders, same suffixes) for ``paths``; commit them together on success.

    All destinations are checked before anything is written. On an exception
    (including ``KeyboardInterrupt``) the temporary files are removed and no
    destination is touched. Stale temporaries of dead processes in the
    destination folders are swept first.
    """
    dests = [check_writable(p, overwrite) for p in paths]
    for folder in {d.parent for d in dests}:
        sweep_stale(folder)
    temps: list[Path] = []
    try:
        for d in dests:
            _create_temp(d, ".part" + "".join(d.suffixes[-2:]), temps, _make_file)
        yield temps
        commit_files(zip(temps, dests), overwrite)
    finally:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


@contextlib.contextmanager
def atomic_path(path, overwrite: bool = False):
    """Single-file form of :func:`atomic_paths`."""
    with atomic_paths([path], overwrite) as (tmp,):
        yield tmp
