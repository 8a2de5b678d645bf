"""A configuration's curve over its seeds: each seed interpolated where the others logged and left
out past its own ends. Pure Python, so that the terminal UI draws the same line as the PNG plots
without numpy or matplotlib."""

from __future__ import annotations

from bisect import bisect_left


def value_at(points: list[tuple[float, float]], xs: list[float], x: float) -> float | None:
    """The curve ``points`` (sorted by x; ``xs`` their x) at ``x``, interpolated; None outside it."""
    if not points or x < xs[0] or x > xs[-1]:
        return None
    i = bisect_left(xs, x)
    if xs[i] == x:
        return points[i][1]
    (x0, y0), (x1, y1) = points[i - 1], points[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def band(runs: list[list[tuple[float, float]]]) -> list[tuple[float, float, float, float]]:
    """(x, mean, lowest, highest) over the seeds' curves ``runs`` at every x any of them logged."""
    runs = [sorted(r) for r in runs if r]
    axes = [[p[0] for p in r] for r in runs]
    out = []
    for x in sorted({x for r in runs for x, _ in r}):
        values = [v for r, xs in zip(runs, axes) if (v := value_at(r, xs, x)) is not None]
        out.append((x, sum(values) / len(values), min(values), max(values)))
    return out
