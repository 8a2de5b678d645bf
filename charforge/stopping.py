"""How a run stops early: Ctrl-C and SIGTERM caught between steps (and SIGTERM before any step, with
one line), the rule for a loss that counts as divergence, and the one line for a run whose numbers
blew up."""

from __future__ import annotations

import math
import signal
import sys
import threading

from charforge.config import TrainConfig
from charforge.runs.directory import Run
from charforge.runs.header import checkpoint_step


def quit_on_sigterm() -> None:
    """SIGTERM while no training runs (PyTorch still loading, the corpus being read, or a command that
    does not train) ends the command with one line instead of silently; a training run catches it
    itself, saves and says how to resume."""
    def stop(signum, frame):
        print("charforge: stopped by SIGTERM while no training ran; nothing was lost.", file=sys.stderr)
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)


def catch_signals(interrupted):
    """Call ``interrupted()`` on Ctrl-C and SIGTERM (the trainer stops after the step, or at once the
    second time); returns the function that puts the previous handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {s: signal.signal(s, lambda signum, frame: interrupted()) for s in (signal.SIGINT, signal.SIGTERM)}
    # None: a handler installed outside Python, which cannot be put back; the default is closest
    return lambda: [signal.signal(s, signal.SIG_DFL if h is None else h) for s, h in previous.items()]


DIVERGED = 10  # a loss this many times a uniform guess's, log(vocabulary size), counts as divergence


def diverged(which: str, loss: float, vocab_size: int) -> str | None:
    """What is wrong with a ``which`` ("training", "validation") loss that counts as divergence, else None:
    NaN, infinite, or above :data:`DIVERGED` times what guessing every symbol alike costs. A model
    that far behind a uniform guess has broken; its weights must not overwrite a good checkpoint."""
    limit = DIVERGED * max(math.log(vocab_size), math.log(2))
    if not math.isfinite(loss):
        return f"the {which} loss became {loss}"
    if loss > limit:
        return f"the {which} loss became {loss:.4g}, more than {DIVERGED} times a uniform guess's ({limit:.3g})"
    return None


def divergence_message(what: str, step: int, c: TrainConfig, run: Run) -> str:
    """The one line for a run whose numbers blew up: where, what is safe, what to try."""
    latest = run.checkpoint("latest")
    saved = checkpoint_step(latest)
    if saved is None:
        safe, then = "no checkpoint was saved yet", "start again"
    else:
        safe, then = (f"the last good checkpoint, {latest} (step {saved}), is intact",
                      f"resume: charforge train --resume {run.path} --lr {c.lr / 10:g}")
    clip = f"clip harder (--clip-value, now {c.clip_value:g})" if c.clip != "none" else "clip (--clip norm)"
    return (f"training diverged: {what} at step {step}; {safe}. Lower the learning "
            f"rate (--lr, now {c.lr:g}) or {clip}, then {then}.")
