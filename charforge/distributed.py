"""Training in several processes: PyTorch's DistributedDataParallel under ``torchrun``, nothing of our own.

``torchrun`` (or ``charforge train --nproc N``, which starts it) sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :meth:`World.current` then joins the process group (gloo on CPUs, NCCL on CUDA,
``CHARFORGE_BACKEND`` to choose another). Each rank trains its own contiguous share of the batch's
streams and DDP averages the gradients, so N processes with B/N streams each train the one-process
run with B. The few decisions that must agree across ranks (stop, validate, save) are taken
together (:meth:`World.any`), and what rank 0 writes (the hidden state of every stream) is gathered
to it. Without ``torchrun`` the world is one process and every method is a no-op.
"""

from __future__ import annotations

import atexit
import os
from typing import TYPE_CHECKING

from charforge.errors import CharforgeError

if TYPE_CHECKING:
    import torch


def launched() -> tuple[int, int]:
    """(rank, world size) that a launcher set for this process, (0, 1) when none did (no torch needed)."""
    try:
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise CharforgeError("RANK and WORLD_SIZE must be whole numbers (torchrun sets them).") from None


class PeerLost(SystemExit):
    """Another process of the run failed (its error line says why): this one ends quietly, status 1."""

    def __init__(self):
        super().__init__(1)

    def __str__(self) -> str:  # what the run's record says of this rank's end
        return "another process of the run failed"


_lost = False  # a peer is gone: the process group cannot be taken down in order


def _together(call):
    """Run a collective; one that fails because another rank is gone ends this rank as :class:`PeerLost`."""
    global _lost
    try:
        return call()
    except RuntimeError:
        _lost = True
        raise PeerLost() from None


def leave_at_once(code) -> None:
    """End a rank of several now, with exit status ``code`` (as ``SystemExit`` holds it), skipping the
    interpreter's teardown: taking gloo's threads down with it can abort a process that has done its
    work. Returns at once in a process that trains alone."""
    import sys

    if World._current is None or World._current.size == 1:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


def _leave() -> None:
    """At exit, end the process group (gloo's threads must stop before the interpreter does); when a
    peer is gone that would abort the process, so it leaves at once, its output flushed."""
    import sys

    import torch.distributed as dist

    if _lost:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    dist.destroy_process_group()


class World:
    """This process's place among the processes training one run."""

    def __init__(self, rank: int = 0, size: int = 1, local_size: int = 1):
        self.rank, self.size, self.local_size = rank, size, local_size

    _current: "World | None" = None

    @classmethod
    def current(cls) -> "World":
        """The world this process belongs to, joining the process group the first time."""
        if cls._current is None:
            rank, size = launched()
            if size > 1:
                import torch
                import torch.distributed as dist

                backend = os.environ.get("CHARFORGE_BACKEND") or ("nccl" if torch.cuda.is_available() else "gloo")
                if torch.cuda.is_available() and backend == "nccl":
                    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
                if not dist.is_initialized():
                    dist.init_process_group(backend)
                    atexit.register(_leave)
            cls._current = cls(rank, size, int(os.environ.get("LOCAL_WORLD_SIZE", str(size))))
        return cls._current

    @property
    def writer(self) -> bool:
        """Whether this process writes the run (rank 0 alone)."""
        return self.rank == 0

    def threads(self, cores: int) -> int:
        """The CPU threads each process of this machine pins: its share of the cores."""
        return max(1, cores // self.local_size)

    def streams(self, train, val, task):
        """(training, held-out) streams of this rank: its share of each, the held-out ones whole when they
        are fewer than the ranks."""
        if self.size == 1:
            return train, val
        if task is not None:
            raise CharforgeError(f"a task trains in one process; {self.size} were started.")
        if train.batch % self.size:
            raise CharforgeError(f"--batch-size {train.batch} does not split evenly over {self.size} processes; "
                                 f"give a multiple of {self.size}.")
        return train.shard(self), (val.shard(self) if val is not None and val.batch >= self.size else val)

    def share(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of ``rows`` (its streams), the first dimension split as evenly as it goes."""
        if self.size == 1:
            return rows
        n = rows.shape[0]
        return rows[self.rank * n // self.size:(self.rank + 1) * n // self.size]

    def any(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag, true when it is true on any rank: one decision for all of them."""
        if self.size == 1:
            return tuple(bool(f) for f in flags)
        import torch
        import torch.distributed as dist

        t = torch.tensor([float(bool(f)) for f in flags], device=self._device())
        _together(lambda: dist.all_reduce(t, op=dist.ReduceOp.MAX))
        return tuple(bool(v) for v in t.tolist())

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over the ranks (every rank gets the sum)."""
        if self.size == 1:
            return t
        import torch.distributed as dist

        t = t.detach().clone()
        _together(lambda: dist.all_reduce(t))
        return t

    def gather_rows(self, t: torch.Tensor) -> torch.Tensor:
        """Every rank's ``t`` (its streams' rows), in rank order: what one process would hold."""
        if self.size == 1:
            return t
        import torch
        import torch.distributed as dist

        sizes = [torch.zeros(1, dtype=torch.int64, device=t.device) for _ in range(self.size)]
        _together(lambda: dist.all_gather(sizes, torch.tensor([t.shape[0]], device=t.device)))
        parts = [t.new_empty((int(s), *t.shape[1:])) for s in sizes]
        _together(lambda: dist.all_gather(parts, t.contiguous()))
        return torch.cat(parts)

    def broadcast_text(self, text: str) -> str:
        """Rank 0's ``text`` on every rank (sent as bytes: nothing is unpickled)."""
        if self.size == 1:
            return text
        import torch
        import torch.distributed as dist

        data = torch.tensor(list(text.encode("utf-8")), dtype=torch.uint8, device=self._device())
        size = torch.tensor([len(data)], dtype=torch.int64, device=self._device())
        _together(lambda: dist.broadcast(size, 0))
        if not self.writer:
            data = torch.zeros(int(size), dtype=torch.uint8, device=self._device())
        _together(lambda: dist.broadcast(data, 0))
        return bytes(data.cpu().tolist()).decode("utf-8")

    def raise_if_lost(self, error: BaseException) -> None:
        """End this rank as :class:`PeerLost` when ``error`` is the process group's own: another rank is gone."""
        if self.size > 1 and not isinstance(error, PeerLost):
            import torch.distributed as dist

            if isinstance(error, dist.DistError) or (isinstance(error, RuntimeError) and any(
                    word in str(error) for word in ("gloo", "NCCL", "Connection closed", "Connection reset"))):
                global _lost
                _lost = True
                raise PeerLost() from None

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model training calls: DDP around it, which averages the gradients, when there are several ranks."""
        if self.size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model)

    def _device(self) -> torch.device:
        import torch
        import torch.distributed as dist

        return torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")
