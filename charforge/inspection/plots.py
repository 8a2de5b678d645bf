"""An :class:`~charforge.inspection.extract.Inspection` drawn with matplotlib: the surprisal along the
text, the chosen units over it, the gate saturation scatter of Karpathy et al. (2015) and a time
cell's openness and learned clock. :func:`figures` draws them as PNG bytes, which the HTML report
embeds and :func:`write_plots` writes as files, so both show the same pictures."""

from __future__ import annotations

import io
import operator
from pathlib import Path

import numpy as np

from charforge.errors import CharforgeError
from charforge.inspection.extract import LEFT, RIGHT, Inspection, unit_label

MOST_UNITS = 12  # panels in the units figure; past that they are too thin to read
TIME_UNITS = 4  # units whose openness is drawn, per time layer
TIME_WINDOW = 500  # characters of openness drawn: enough for a few periods, few enough to see each
SMOOTH_MOST = 200  # characters in the surprisal's moving average, at most


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no window, whatever the machine has
    import matplotlib.pyplot as plt

    return plt


def chosen_units(inspection: Inspection, units=(), found=None) -> list[tuple[int, str, int, str]]:
    """The units to show, as (layer, name, unit, label), each once: those asked for, then the ranked
    units of ``found`` (a feature -> [(layer, name, unit, correlation), ...] ranking) rank by rank,
    every feature's best before any second best. An unknown layer, trace or unit is a one-line error."""
    out: dict[tuple[int, str, int], str] = {}
    for entry in units:
        layer, name, unit = _checked(inspection, entry, 3)
        out.setdefault((layer, name, unit), unit_label(layer, name, unit))
    ranked = [(feature, rank, entry) for feature, entries in (found or {}).items()
              for rank, entry in enumerate(entries, 1)]
    for feature, rank, entry in sorted(ranked, key=lambda r: r[1]):
        layer, name, unit, correlation = _checked(inspection, entry, 4)
        key = (layer, name, unit)
        note = f"{feature} #{rank} r={correlation:+.2f}"
        out[key] = f"{out[key]}, {note}" if key in out else f"{unit_label(layer, name, unit)} {note}"
    return [(*key, label) for key, label in out.items()]


def _checked(inspection: Inspection, entry, size: int) -> tuple:
    """``entry`` as (layer, name, unit[, correlation]) of a unit ``inspection`` has, else a one-line error."""
    shape = "(layer, name, unit)" if size == 3 else "(layer, name, unit, correlation)"
    if not isinstance(entry, (tuple, list)) or len(entry) != size:
        raise CharforgeError(f"a unit is {shape}, not {entry!r}.")
    try:
        if isinstance(entry[0], bool) or isinstance(entry[2], bool) or not isinstance(entry[1], str):
            raise TypeError
        layer, name, unit = operator.index(entry[0]), entry[1], operator.index(entry[2])
    except TypeError:
        raise CharforgeError(f"a unit is {shape} with whole numbers and a trace name, not {entry!r}.") from None
    inspection.unit(layer, unit, name)
    return (layer, name, unit, float(entry[3])) if size == 4 else (layer, name, unit)


def _smoothed(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """A centred moving average of ``values`` (x, y, width), wide enough to show the trend."""
    width = max(1, min(SMOOTH_MOST, len(values) // 20))
    y = np.convolve(values, np.ones(width) / width, mode="valid")
    return np.arange(len(y)) + (width - 1) / 2, y, width


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    fig.clf()
    _pyplot().close(fig)
    return buffer.getvalue()


def _surprisal(plt, inspection: Inspection):
    bits = inspection.bits.double().numpy()
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.plot(np.arange(len(bits)), bits, color="#bbbbbb", linewidth=0.6, label="each character")
    x, y, width = _smoothed(bits)
    ax.plot(x, y, color="#c0392b", linewidth=1.6, label=f"mean of {width}" if width > 1 else "")
    ax.axhline(inspection.bits_per_char, color="#333333", linestyle="--", linewidth=0.8,
               label=f"{inspection.bits_per_char:.3f} bits/char")
    ax.set(xlabel="position in the text", ylabel="surprisal (bits)", title="Surprisal along the text")
    ax.set_xlim(0, max(1, len(bits) - 1))
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def _units(plt, inspection: Inspection, shown: list[tuple[int, str, int, str]]):
    if len(shown) > MOST_UNITS:
        fig_title = f"the first {MOST_UNITS} of {len(shown)} units"
        shown = shown[:MOST_UNITS]
    else:
        fig_title = ""
    fig, axes = plt.subplots(len(shown), 1, figsize=(9, 0.5 + 1.3 * len(shown)), sharex=True, squeeze=False)
    for ax, (layer, name, unit, label) in zip(axes[:, 0], shown):
        values = inspection.unit(layer, unit, name).numpy()
        ax.plot(np.arange(len(values)), values, color="#2c5d8f", linewidth=0.8)
        ax.axhline(0, color="#999999", linewidth=0.5)
        ax.set_title(label, fontsize=9, loc="left", parse_math=False)  # a --feature name is the user's text
    axes[-1, 0].set_xlabel("position in the text")
    if fig_title:
        fig.suptitle(fig_title, fontsize=9)
    fig.tight_layout()
    return fig


def _gates(plt, inspection: Inspection):
    saturation = inspection.saturation()
    layers = sorted({int(key.split(".", 1)[0]) for key in saturation})
    fig, axes = plt.subplots(1, len(layers), figsize=(3.6 * len(layers) + 0.6, 3.8), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        for key, (left, right) in saturation.items():
            if key.startswith(f"{layer}."):
                ax.scatter(left.numpy(), right.numpy(), s=9, alpha=0.6, label=key.rsplit(".", 1)[1])
        ax.plot([0, 1], [1, 0], color="#999999", linewidth=0.6)
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), title=f"layer {layer}",
               xlabel=f"fraction left-saturated (< {LEFT})")
        ax.set_aspect("equal")
        ax.legend(fontsize=8, loc="upper right")
    axes[0, 0].set_ylabel(f"fraction right-saturated (> {RIGHT})")
    fig.suptitle("Gate saturation (one point per gate unit)", fontsize=10)
    fig.tight_layout()
    return fig


def _time_units(inspection: Inspection, layer: int, hidden: int) -> list[int]:
    """A few units to draw, spread over the learned periods where the layer has a clock."""
    clock = inspection.clocks.get(layer, {})
    order = clock["period"].argsort().tolist() if "period" in clock else list(range(hidden))
    picks = np.linspace(0, len(order) - 1, min(TIME_UNITS, len(order))).round().astype(int)
    return [order[i] for i in dict.fromkeys(picks.tolist())]


def _time(plt, inspection: Inspection, layers: list[int]):
    fig, axes = plt.subplots(len(layers), 1, figsize=(9, 0.6 + 2.2 * len(layers)), squeeze=False)
    for ax, layer in zip(axes[:, 0], layers):
        k = inspection.trace(layer, "time.k")[:TIME_WINDOW]
        period = inspection.clocks.get(layer, {}).get("period")
        for unit in _time_units(inspection, layer, k.shape[1]):
            label = f"unit {unit}" + (f" (period {float(period[unit]):.3g})" if period is not None else "")
            ax.plot(np.arange(len(k)), k[:, unit].numpy(), linewidth=0.9, label=label)
        ax.set(ylim=(-0.05, 1.05), ylabel="openness k(t)",
               title=f"layer {layer}: time gate over the first {len(k)} characters")
        ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("position in the text")
    fig.tight_layout()
    return fig


def _clocks(plt, inspection: Inspection):
    layers = sorted(inspection.clocks)
    fig, axes = plt.subplots(len(layers), 2, figsize=(9, 0.6 + 2.6 * len(layers)), squeeze=False)
    for row, layer in zip(axes, layers):
        clock = inspection.clocks[layer]
        if "period" in clock:
            period = clock["period"].double().numpy()
            bins = np.geomspace(period.min(), period.max(), 30) if period.min() > 0 and np.ptp(period) else 30
            row[0].hist(period, bins=bins, color="#2c5d8f")
            if period.min() > 0:
                row[0].set_xscale("log")
            row[0].set(title=f"layer {layer}: learned periods", xlabel="period (characters)", ylabel="units")
        if "open_ratio" in clock:
            row[1].hist(clock["open_ratio"].double().numpy(), bins=30, color="#c0392b")
            row[1].set(title=f"layer {layer}: learned open ratios", xlabel="open ratio", ylabel="units")
    fig.tight_layout()
    return fig


def figures(inspection: Inspection, found=None, units=()) -> dict[str, bytes]:
    """The plots as PNG bytes by name (``surprisal``, ``units``, ``gates``, ``time``, ``clocks``),
    each only where there is something to show: no ``gates`` for a cell without gates, no ``time``
    or ``clocks`` for a cell without a clock, nothing for an empty text."""
    if not len(inspection):
        return {}
    shown = chosen_units(inspection, units, found)
    plt = _pyplot()
    drawn = {"surprisal": _surprisal(plt, inspection)}
    if shown:
        drawn["units"] = _units(plt, inspection, shown)
    if inspection.saturation():
        drawn["gates"] = _gates(plt, inspection)
    timed = sorted(int(key.split(".", 1)[0]) for key in inspection.traces if key.endswith(".time.k"))
    if timed:
        drawn["time"] = _time(plt, inspection, timed)
    if any(("period" in c or "open_ratio" in c) for c in inspection.clocks.values()):
        drawn["clocks"] = _clocks(plt, inspection)
    return {name: _png(fig) for name, fig in drawn.items()}


def write_plots(inspection: Inspection, directory: str | Path, found=None, units=()) -> list[Path]:
    """Write :func:`figures` into ``directory`` (made if missing) as ``<name>.png``; the paths written."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CharforgeError(f"cannot make the folder {directory} for the plots: {e.strerror or e}.") from None
    written = []
    for name, png in figures(inspection, found, units).items():
        path = directory / f"{name}.png"
        try:
            path.write_bytes(png)
        except OSError as e:
            raise CharforgeError(f"cannot write {path}: {e.strerror or e}.") from None
        written.append(path)
    return written
