"""``charforge frequency-task``: the Phased LSTM paper's task, a timed cell against a baseline, as two
runs of the ``frequency`` task (``charforge compare frequency --cell phased-lstm,lstm`` does the same
as a grid, when no cell option is given)."""

from __future__ import annotations

import json

import click

from charforge.cli.common import pairs
from charforge.tasks.settings import FREQUENCY

_FIELDS = {"steps": "steps", "hidden_size": "hidden_size", "layers": "num_layers", "batch_size": "batch_size",
           "lr": "lr", "seed": "seed", "threads": "threads"}
_TASK = ("samples", "test_samples", "min_points", "max_points")


def _task_option(flag, type, help):
    field = flag.lstrip("-").replace("-", "_")
    return click.option(flag, field, type=type, default=getattr(FREQUENCY, field), show_default=True, help=help)


@click.command("frequency-task")
@_task_option("--steps", int, "Optimizer steps for each model.")
@_task_option("--hidden-size", int, "Units per layer.")
@_task_option("--layers", int, "Stacked recurrent layers.")
@_task_option("--batch-size", int, "Waves per step.")
@_task_option("--lr", float, "Adam's peak learning rate (cosine-decayed).")
@_task_option("--samples", int, "Training waves.")
@_task_option("--test-samples", int, "Held-out waves.")
@_task_option("--min-points", int, "Fewest samples per wave.")
@_task_option("--max-points", int, "Most samples per wave.")
@_task_option("--seed", int, "Random seed (data and models).")
@_task_option("--threads", int, "CPU threads (0: adaptive).")
@click.option("--cell", "timed_cell", default="phased-lstm", show_default=True, help="The cell that uses time.")
@click.option("--baseline", default="lstm", show_default=True, help="The cell that gets t as an input feature.")
@click.option("-c", "--cell-option", "cell_options", nargs=2, multiple=True, callback=pairs,
              metavar="KEY VALUE", help="An option of --cell, e.g. -c r_on 0.1 (repeatable).")
@click.option("--runs-dir", default="runs", show_default=True, help="Where the two run directories go.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON line at the end.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def frequency_task(timed_cell, baseline, cell_options, runs_dir, as_json, quiet, **options):
    """The Phased LSTM paper's frequency-discrimination task, asynchronously sampled.

    Sine waves sampled at random times; class 1 when the period is in [5, 6] ms. Trains --cell
    (values in, timestamps as its clock) and --baseline (value and timestamp as inputs) on the same
    waves, each as a run of the task `frequency` in RUNS_DIR, and prints both held-out accuracies.
    """
    from charforge.data import run_config
    from charforge.plugins import Registry, make_plugin_manager
    from charforge.trainer import Trainer

    pm = make_plugin_manager(block=["console"] if quiet or as_json else ())
    registry = Registry(pm)
    fields = {_FIELDS[k]: v for k, v in options.items() if k in _FIELDS}
    task_options = {k: options[k] for k in _TASK}
    result: dict = {"settings": {**options, "cells": [timed_cell, baseline]}}
    for name in (timed_cell, baseline):
        timed = registry.get("cell", name).obj.uses_time
        config = run_config({"corpus": "frequency", "cell": name, "task_options": task_options, **fields,
                             "cell_options": (cell_options or {}) if timed else {}}, registry)
        trainer = Trainer(config, pm=pm, runs_root=runs_dir)
        metrics = trainer.run()
        result[name] = {"accuracy": metrics["val_accuracy"], "train_loss": metrics["loss"],
                        "seconds": trainer.elapsed, "parameters": sum(p.numel() for p in trainer.model.parameters()),
                        "run": str(trainer.run_dir)}
    if as_json:
        click.echo(json.dumps(result))
        return
    for name in (timed_cell, baseline):
        click.echo(f"{name:>12}: held-out accuracy {result[name]['accuracy']:.1%} ({result[name]['run']})")
