"""Experiments: a grid of training runs (``charforge compare``), run, resumed, summarised and plotted.

* :mod:`.grid`: a grid's definition (axes, seeds, fixed settings; from the command line or a TOML
  file) and its points, each one an ordinary run under ``runs/GRID/``.
* :mod:`.check`: every point checked before anything trains.
* :mod:`.runner`: the points trained in this process or in worker processes, finished ones skipped.
* :mod:`.summary`: ``points.csv``, ``summary.csv`` and ``summary.md`` from the runs' own records.
* :mod:`.curves`: a configuration's curve over its seeds (the plots' and the terminal UI's).
* :mod:`.plots`: the curves and the sweeps, as PNG files.
* :mod:`.compare`: all of it in order, for the command line or a script.
"""
