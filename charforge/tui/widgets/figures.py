"""The latest figures of a run: step, epoch, losses, accuracy, learning rate, grad norm, speed.

When the panel is too short for every row (a small terminal), the least telling rows go first,
so that the step, the losses, the best validation loss and the last checkpoint always show.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from charforge.display import finite, number, percent, si
from charforge.tui.history import RunHistory


def rows(history: RunHistory) -> list[tuple[str, str, int]]:
    """(name, value, rank) in display order; the lower the rank, the longer a row stays."""
    m = history.latest
    ckpt = history.last_checkpoint
    step = ckpt.get("step")
    saved = f"{ckpt.get('kind')} @ {step:,}" if ckpt and finite(step) else "-"
    return [
        ("step", f"{history.step:,}", 0),
        ("epoch", number(m.get("epoch"), 2), 8),
        ("loss", f"{number(m.get('loss'))} nats", 1),
        ("bpc", number(m.get("bpc")), 6),
        ("accuracy", percent(m.get("accuracy")), 4),
        ("lr", f"{m['lr']:.3g}" if finite(m.get("lr")) else "-", 9),
        ("grad norm", number(m.get("grad_norm"), 3), 11),
        ("chars/s", si(m.get("chars_per_s")), 5),
        ("", "", 12),
        ("val loss", f"{number(m.get('val_loss'))} nats" if "val_loss" in m else "-", 3),
        ("val bpc", number(m.get("val_bpc")), 10),
        ("val acc", percent(m.get("val_accuracy")), 7),
        ("best val", number(history.best_val), 0),
        ("saved", saved, 0),
    ]


def fitting(all_rows: list[tuple[str, str, int]], height: int) -> list[tuple[str, str]]:
    """The ``height`` best-ranked rows, in display order (all of them when they fit)."""
    if height <= 0 or height >= len(all_rows):
        return [(name, value) for name, value, _ in all_rows]
    kept = sorted(range(len(all_rows)), key=lambda i: (all_rows[i][2], i))[:height]
    return [all_rows[i][:2] for i in sorted(kept)]


class Figures(Static):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._history: RunHistory | None = None

    def show(self, history: RunHistory) -> None:
        self._history = history
        shown = fitting(rows(history), self.content_size.height)
        # Plain lines, not a rich Table: a table costs ~10 ms to lay out at every update.
        width = max(self.content_size.width, 24)
        text = Text(no_wrap=True, overflow="ellipsis")
        for i, (name, value) in enumerate(shown):
            text.append(("\n" if i else "") + name, style="bold")
            text.append(value.rjust(width - len(name)))
        self.update(text, layout=False)  # a fixed-size panel: no layout pass for new numbers

    def on_resize(self) -> None:
        if self._history is not None:
            self.show(self._history)
