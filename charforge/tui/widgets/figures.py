"""The latest figures of a run: step, epoch, losses, accuracy, learning rate, grad norm, speed."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from charforge.tui.format import number, si
from charforge.tui.history import RunHistory


class Figures(Static):
    def show(self, history: RunHistory) -> None:
        m = history.latest
        rows = [
            ("step", f"{history.step:,}"),
            ("epoch", number(m.get("epoch"), 2)),
            ("loss", f"{number(m.get('loss'))} nats"),
            ("bpc", number(m.get("bpc"))),
            ("accuracy", "-" if m.get("accuracy") is None else f"{m['accuracy']:.1%}"),
            ("lr", "-" if m.get("lr") is None else f"{m['lr']:.3g}"),
            ("grad norm", number(m.get("grad_norm"), 3)),
            ("chars/s", si(m.get("chars_per_s"))),
            ("", ""),
            ("val loss", f"{number(m.get('val_loss'))} nats" if "val_loss" in m else "-"),
            ("val bpc", number(m.get("val_bpc"))),
            ("val acc", "-" if m.get("val_accuracy") is None else f"{m['val_accuracy']:.1%}"),
            ("best val", number(history.best_val)),
        ]
        ckpt = history.last_checkpoint
        if ckpt:
            rows.append(("saved", f"{ckpt.get('kind')} @ {ckpt.get('step', 0):,}"))
        # Plain lines, not a rich Table: a table costs ~10 ms to lay out at every update.
        width = max(self.content_size.width, 24)
        text = Text(no_wrap=True, overflow="ellipsis")
        for i, (name, value) in enumerate(rows):
            text.append(("\n" if i else "") + name, style="bold")
            text.append(value.rjust(width - len(name)))
        self.update(text, layout=False)  # a fixed-size panel: no layout pass for new numbers
