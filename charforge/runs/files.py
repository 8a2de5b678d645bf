"""Atomic file replacement: readers see the old file or the new one, never a mix, whatever happens.

The bytes go to a temporary file beside the target, are flushed to disk (fsync) and renamed over
it, and the folder is fsynced so that the rename survives a power cut. Temporary files that
killed processes left behind are removed by the next write.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from charforge.errors import CharforgeError

_TMP = ".tmp"


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old file or the new one, never a mix.

    The bytes go to a temporary file beside ``path`` that is fsynced and then renamed over it.
    An error (disk full, no permission) removes the temporary file and raises a one-line
    :class:`CharforgeError`; ``path`` itself is untouched until the rename.
    """
    path = Path(path)
    _remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}{_TMP}{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:  # a second Ctrl-C mid-write too: no temporary file is left behind
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise CharforgeError(_write_error(path, exc)) from None
        raise
    _fsync_dir(path.parent)


def _write_error(path: Path, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        hint = "free some disk space (or train with another --runs-dir) and resume"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = f"make {path.parent} writable (or train with another --runs-dir) and resume"
    elif exc.errno == errno.ENOENT:
        hint = f"the folder {path.parent} has disappeared"
    else:
        hint = "check the disk and resume"
    return f"could not write checkpoint {path}: {reason}; the previous checkpoint is intact; {hint}."


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (best effort: some systems cannot open or fsync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_stale_temporaries(path: Path) -> None:
    """Delete the temporary files that processes killed mid-save left beside ``path``."""
    if os.name != "posix":  # os.kill(pid, 0) would end the process on Windows
        return
    try:
        names = [e.name for e in os.scandir(path.parent) if e.name.startswith(".") and _TMP in e.name]
    except OSError:
        return
    for name in names:
        pid = name.rpartition(_TMP)[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            try:
                os.unlink(path.parent / name)
            except OSError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
