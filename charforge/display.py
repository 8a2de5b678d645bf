"""Figures as people read them: clocks, rates, losses, budgets; for the console, generation's progress
and the terminal UI alike.

Each takes whatever a run's event held: anything but a finite number is shown as a dash.
"""

from __future__ import annotations

import sys


def finite(value) -> bool:
    """A number that is neither a bool nor NaN nor infinite, and that a float holds (JSON's integers have no limit)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) <= sys.float_info.max


def clock(seconds: float | None) -> str:
    if not finite(seconds):
        return "--:--"
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def si(value: float | None) -> str:
    """12.3k, 4.56M: a rate in three significant figures."""
    if not finite(value):
        return "-"
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def number(value: float | None, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if finite(value) else "-"


def percent(value: float | None) -> str:
    return f"{value:.1%}" if finite(value) else "-"


def amount(value: float, unit: str) -> str:
    """``1 minute``, ``2 minutes``, ``0.5 minutes``: a budget as it is said."""
    return f"{value:g} {unit}" + ("" if value == 1 else "s")
