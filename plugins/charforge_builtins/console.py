"""Training's terminal output, as a plugin: block it (``--quiet``) or replace it like any other."""

from __future__ import annotations

import sys
import time

from charforge.hookspecs import hookimpl

_PLAIN_EVERY = 10.0  # seconds between progress lines when stderr is not a terminal
_state = {"last": 0.0, "started": 0.0, "progress0": 0.0}


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _bar(fraction: float, width: int = 20) -> str:
    filled = int(round(fraction * width))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _line(text: str) -> None:
    """A finished line on stdout, clearing any progress bar drawn on a terminal's stderr."""
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()
    print(text, flush=True)


@hookimpl
def on_train_start(trainer):
    c = trainer.config
    params = sum(p.numel() for p in trainer.model.parameters())
    budget = ", ".join(f"{v:g} {k}" for k, v in (("steps", c.steps), ("epochs", c.epochs),
                                                   ("minutes", c.minutes)) if v)
    resumed = f" (resuming at step {trainer.step})" if trainer.step else ""
    _line(f"charforge: {c.num_layers}x{c.hidden_size} {c.cell} ({params:,} parameters) on {c.corpus}: "
          f"{trainer.train_data.windows * trainer.train_data.chars_per_window:,} training chars, "
          f"{len(trainer.vocab)} distinct, {c.optimizer} lr {c.lr:g}, budget {budget}, "
          f"device {trainer.device}{resumed}")
    _line(f"run directory: {trainer.run_dir}")
    _state.update(last=time.monotonic(), started=time.monotonic(), progress0=trainer.progress())


@hookimpl
def on_step_end(trainer, step, metrics):
    now = time.monotonic()
    done = metrics["progress"] - _state["progress0"]
    eta = (now - _state["started"]) * (1 - metrics["progress"]) / done if done > 0 else 0.0
    val = trainer.last_metrics.get("val_loss")
    text = (f"{_bar(metrics['progress'])} {metrics['progress']:4.0%} step {step} "
            f"loss {metrics['loss']:.3f} ({metrics['bpc']:.2f} bpc) acc {metrics['accuracy']:.0%} "
            f"{'val %.3f ' % val if val is not None else ''}"
            f"{metrics['chars_per_s'] / 1000:.1f}k chars/s ETA {_clock(eta)}")
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K" + text)
        sys.stderr.flush()
    elif now - _state["last"] >= _PLAIN_EVERY:
        _state["last"] = now
        print(text, flush=True)


@hookimpl
def on_validation_end(trainer, step, metrics, sample):
    if "val_loss" in metrics:
        _line(f"step {step}: validation loss {metrics['val_loss']:.4f} nats/char "
              f"({metrics['val_bpc']:.3f} bpc), accuracy {metrics['val_accuracy']:.1%}")
    indented = "\n".join("  | " + line for line in sample.splitlines()[:8])
    _line(indented)


@hookimpl
def on_train_end(trainer, reason, metrics):
    run = trainer.run_dir
    if reason == "interrupted":
        _line(f"interrupted at step {trainer.step}; saved. Resume with: charforge train --resume {run}")
    else:
        best = "" if trainer.best_val == float("inf") else f", best validation loss {trainer.best_val:.4f}"
        _line(f"done ({reason}) at step {trainer.step}{best}. Sample with: charforge sample {run}")


@hookimpl
def on_train_error(trainer, error):
    if isinstance(error, KeyboardInterrupt):
        _line(f"stopped at once at step {trainer.step}; the last checkpoint in {trainer.run_dir} is intact.")
