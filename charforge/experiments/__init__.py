"""Experiments: a grid of training runs (``charforge compare``), run, resumed, summarised and plotted.

* :mod:`.grid`: a grid's definition (axes, seeds, fixed settings; from the command line or a TOML
  file) and its points, each one an ordinary run under ``runs/GRID/``.
* :mod:`.check`: every point checked before anything trains.
* :mod:`.runner`: the points trained in this process or in worker processes, finished ones skipped.
* :mod:`.summary`: ``points.csv``, ``summary.csv`` and ``summary.md`` from the runs' own records.
* :mod:`.plots`: the curves and the sweeps, as PNG files.
"""
