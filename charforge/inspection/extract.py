"""One pass of a model over a text, keeping what the views need: an :class:`Inspection`.

The pass is the float32 forward that training and :meth:`charforge.api.Model.score` run, window by
window with the state carried, through each cell's :meth:`~charforge.cell.Cell.inspect` (which
returns the layer's output and its named traces). The text is conditioned as a generation starts,
after a line break, so every character has a loss, and the losses add up to
``-Model.score(text, prompt="").log_likelihood``. The model reads that line break and then every
character of the text: the prediction before a character gives its loss, and the state after it
its traces (as Karpathy et al. colour a character by the activation once it is read).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from charforge.errors import CharforgeError
from charforge.model import CharModel, available_memory
from charforge.sampling.settings import check_text
from charforge.vocab import Vocab

LN2 = math.log(2)
WINDOW = 4096  # characters per forward pass (scoring and inspecting)
TOP = 5  # predictions kept per position
LEFT, RIGHT = 0.1, 0.9  # a gate below LEFT is left-saturated, above RIGHT right-saturated (Karpathy et al. 2015)
SURPRISAL_TOP = 8.0  # bits (one chance in 256) where every view's surprisal scale tops out: fixed, so texts compare


def colour_range(name: str, values: Tensor) -> tuple[float, float]:
    """The range a trace's colours span in every view: [0, 1] for a gate or a time gate's openness;
    else symmetric about 0, [-1, 1] or wider for a state that leaves it (an LSTM's c may)."""
    if name.startswith(("gate.", "time.")):
        return 0.0, 1.0
    high = max(1.0, float(values.abs().max())) if len(values) else 1.0
    return -high, high


def unit_label(layer: int, name: str, unit: int) -> str:
    """A unit as ``charforge inspect --unit`` names it: ``layer:unit:trace``, such as ``0:79:c``."""
    return f"{layer}:{unit}:{name}"


@dataclass
class Inspection:
    """A model's view of ``text``, position by position (``n`` = ``len(text)``).

    - ``losses`` (n,): nats of surprise at each character, predicted from the characters before it.
    - ``top_ids``, ``top_probs`` (n, k): the model's ``k`` likeliest next characters *before* it read
      position i (what it expected there), most likely first.
    - ``traces``: ``"<layer>.<name>"`` -> (n, hidden) float32, each value the one the model
      computed reading the character at that position (a state: once it has read it). Names: the cell's state (``h``; an LSTM's ``c`` too),
      ``gate.<g>`` for gates (in [0, 1]: an LSTM's ``i``, ``f``, ``o``, a GRU's ``r``, ``z``), and
      ``time.k`` for a time cell's openness.
    - ``clocks``: ``layer`` -> a time cell's learned parameters by name (``period``, ``open_ratio``,
      ``shift``: (hidden,) each), from :meth:`~charforge.cell.Cell.clock`.
    """

    text: str
    chars: list[str]  # the vocabulary, in id order
    ids: Tensor  # (n,) long
    losses: Tensor  # (n,) float32, nats
    top_ids: Tensor  # (n, k) long
    top_probs: Tensor  # (n, k) float32
    traces: dict[str, Tensor] = field(default_factory=dict)
    clocks: dict[int, dict[str, Tensor]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.text)

    @property
    def bits(self) -> Tensor:
        """Surprisal at each character in bits."""
        return self.losses / LN2

    @property
    def bits_per_char(self) -> float:
        """The text's mean surprisal in bits (0 for an empty text)."""
        return float(self.losses.double().mean()) / LN2 if len(self) else 0.0

    @property
    def layers(self) -> int:
        return len({key.split(".", 1)[0] for key in self.traces})

    def names(self, layer: int = 0) -> list[str]:
        """The trace names of one layer (``h``, ``c``, ``gate.f``...), in the cell's order."""
        prefix = f"{layer}."
        return [key[len(prefix):] for key in self.traces if key.startswith(prefix)]

    def trace(self, layer: int, name: str = "h") -> Tensor:
        """(n, hidden): one layer's trace; a one-line error names the ones there are."""
        key = f"{layer}.{name}"
        if key not in self.traces:
            raise CharforgeError(f"no trace {name!r} in layer {layer}; the model has "
                                 f"{', '.join(self.traces) or 'none'} (layer.name).")
        return self.traces[key]

    def unit(self, layer: int, unit: int, name: str = "h") -> Tensor:
        """(n,): one unit's value over the text."""
        values = self.trace(layer, name)
        if not 0 <= unit < values.shape[1]:
            raise CharforgeError(f"layer {layer} has units 0 to {values.shape[1] - 1}, not {unit}.")
        return values[:, unit]

    def predictions(self, position: int, k: int | None = None) -> list[tuple[str, float]]:
        """What the model expected at ``position``: (character, probability), likeliest first."""
        ids, probs = self.top_ids[position, :k], self.top_probs[position, :k]
        return [(self.chars[i], float(p)) for i, p in zip(ids.tolist(), probs.tolist())]

    def peak(self, start: int, end: int) -> int:
        """The most surprising position in [start, end): where a span's surprise is worst."""
        return start + int(self.losses[start:end].argmax())

    def surprising_spans(self, count: int = 5, width: int = 8) -> list[tuple[int, int, float]]:
        """The ``count`` most surprising stretches of ``width`` characters (the whole text if it is
        shorter), as (start, end, mean bits), most surprising first; none overlap, so a short text
        may hold fewer."""
        if not len(self):
            return []
        width = max(1, min(width, len(self)))
        means = self.bits.double().unfold(0, width, 1).mean(1)
        spans: list[tuple[int, int, float]] = []
        taken = torch.zeros(len(self), dtype=torch.bool)
        for start in means.argsort(descending=True).tolist():
            if len(spans) == count:
                break
            if not taken[start:start + width].any():
                taken[start:start + width] = True
                spans.append((start, start + width, float(means[start])))
        return spans

    def saturation(self, left: float = LEFT, right: float = RIGHT) -> dict[str, tuple[Tensor, Tensor]]:
        """For every gate trace: (fraction of the text each unit is below ``left``, fraction above
        ``right``), (hidden,) each: the left and right saturation of Karpathy et al.'s figure."""
        return {key: ((values < left).float().mean(0), (values > right).float().mean(0))
                for key, values in self.traces.items() if key.split(".", 1)[1].startswith("gate.")}


@torch.inference_mode()
def inspect_model(model: CharModel, vocab: Vocab, text: str, device: torch.device | str | None = None,
                  top: int = TOP) -> Inspection:
    """The :class:`Inspection` of ``text`` (every character of which the model must know) by ``model``,
    in evaluation mode, on ``device`` (the model's own by default)."""
    check_text(text, "the text to inspect")
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= len(vocab):
        raise CharforgeError(f"top must be a whole number from 1 to {len(vocab)}, not {top!r}.")
    if model.input_size:
        raise CharforgeError("this model reads vectors (a task's), not text; inspect a model trained on text.")
    device = torch.device(device) if device is not None else model.head.weight.device
    ids = vocab.encode(text)
    start = torch.tensor([vocab.index.get("\n", 0)])  # as a generation starts: after a line break
    inputs = torch.cat([start, ids]).to(device)  # step j reads inputs[j] and predicts ids[j]
    targets = torch.cat([ids, start]).to(device)  # after the text: a line break, predicted but not kept
    was_training = model.training
    model.eval()
    steps = len(inputs)
    losses = torch.empty(steps)
    top_ids, top_probs = torch.empty(steps, top, dtype=torch.long), torch.empty(steps, top)
    kept: dict[str, Tensor] = {}  # filled window by window: each trace held once, never joined from parts
    try:
        state = model.initial_state(1, device)
        for begin in range(0, steps, WINDOW):
            x = inputs[begin:begin + WINDOW]
            end = begin + len(x)
            t = (torch.arange(begin, end, dtype=torch.float64, device=device).unsqueeze(0)
                 if model.uses_time else None)
            logits, state, traces = model.inspect(x.unsqueeze(0), state, t)
            logp = logits[0].float().log_softmax(dim=-1)
            losses[begin:end] = -logp.gather(1, targets[begin:end].unsqueeze(1)).squeeze(1).cpu()
            best = logp.topk(top, dim=-1)
            top_ids[begin:end], top_probs[begin:end] = best.indices.cpu(), best.values.exp().cpu()
            if not begin:
                kept = _allocate(traces, steps)
            for layer, named in enumerate(traces):
                for name, values in named.items():
                    kept[f"{layer}.{name}"][begin:end] = values[0]
    finally:
        model.train(was_training)
    clocks = {i: {name: v.float().cpu() for name, v in clock.items()}
              for i, layer in enumerate(model.layers) if (clock := layer.clock()) is not None}
    n = len(text)  # the predictions of steps 0..n-1, the traces of steps 1..n (each text character read)
    return Inspection(text, list(vocab.chars), ids, losses[:n], top_ids[:n], top_probs[:n],
                      {key: values[1:] for key, values in kept.items()}, clocks)


def _allocate(traces: list[dict[str, Tensor]], steps: int) -> dict[str, Tensor]:
    """A float32 (steps, hidden) tensor for each trace the first window returned, refused in one
    line when together they cannot fit in the memory available."""
    widths = {f"{layer}.{name}": values.shape[-1] for layer, named in enumerate(traces) for name, values in named.items()}
    needed = 4 * steps * sum(widths.values())
    available = available_memory()
    if available is not None and needed > available:
        raise CharforgeError(f"inspecting {steps - 1:,} characters needs {needed / 1e9:.3g} GB for the traces of "
                             f"every unit; this machine has {available / 1e9:.3g} GB available. Inspect a shorter text.")
    return {key: torch.empty(steps, width) for key, width in widths.items()}
