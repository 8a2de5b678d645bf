"""One writer per run: an OS file lock on ``RUN/.lock``, held for the life of the training process.

The kernel releases the lock when the process ends, however it ends, so a ``kill -9`` never leaves
a stale lock behind and a crashed run can be resumed at once. Readers (``watch``, ``sample``,
``generate``) never take it. The holder writes its PID into the file, so that a refused second
writer can say who holds the run.
"""

from __future__ import annotations

import os
from pathlib import Path

from charforge.errors import CharforgeError

LOCK = ".lock"

if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


class RunLock:
    """The exclusive right to write one run directory; :meth:`release` (or the process's end) gives it up."""

    def __init__(self, fd: int):
        self._fd = fd

    @classmethod
    def acquire(cls, folder: str | Path) -> "RunLock":
        """Take the lock of the run in ``folder``, or raise a one-line CharforgeError naming the holder."""
        folder = Path(folder)
        path = folder / LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise CharforgeError(f"cannot lock run {folder} for training: {exc.strerror or exc}.") from None
        if not _try_lock(fd):
            holder = _holder(fd)
            os.close(fd)
            who = f"process {holder}" if holder else "another process"
            raise CharforgeError(f"{folder} is being trained by {who}; only one process may train a run at "
                                 f"a time. Wait for it to end (or stop it), then resume; watch, sample and "
                                 f"generate work on it meanwhile.")
        try:  # the PID only informs a refused second writer: a full disk must not stop this one
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass
        return cls(fd)

    def release(self) -> None:
        """Give the run up (closing the file releases the lock); releasing twice is harmless."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        self.release()


def _holder(fd: int) -> int | None:
    """The PID the lock's holder wrote, when it is readable."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32)
    except OSError:
        return None
    digits = text.decode("ascii", "replace").strip()
    return int(digits) if digits.isdigit() else None
