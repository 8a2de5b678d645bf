"""What the TUI commands of ``charforge.cli`` run: build a source, a screen, and the app."""

from __future__ import annotations

import os
from dataclasses import replace

import click

from charforge.config import TrainConfig
from charforge.errors import CharforgeError
from charforge.runs.directory import Run

LAG_LOG = "CHARFORGE_TUI_LAG_LOG"  # a file to write the UI lag measured in this session to


def run_app(make_screen) -> None:
    from charforge.tui.app import CharforgeApp

    app = CharforgeApp(make_screen, lag_log=os.environ.get(LAG_LOG))
    message = app.run()
    if message:
        click.echo(message)


def child_args(ctx: click.Context) -> list[str]:
    """The ``charforge train`` arguments that reproduce this invocation, less --tui and --quiet."""
    args: list[str] = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.name in ("tui", "quiet") or value is None:
            continue
        if isinstance(param, click.Argument):
            args.insert(0, str(value))
        elif param.is_flag and param.secondary_opts:
            args.append(param.opts[0] if value else param.secondary_opts[0])
        elif param.is_flag:
            if value:
                args.append(param.opts[0])
        elif isinstance(value, dict):
            for key, item in value.items():
                args += [param.opts[0], str(key), str(item)]
        else:
            args += [param.opts[0], str(value)]
    return args


def train(ctx: click.Context) -> None:
    """``charforge train ... --tui``: training in a child process, on the training screen."""
    from charforge.tui.sources.process import TrainProcess

    params = ctx.params
    run_dir = None
    if params.get("resume"):
        run_dir = Run.of(params["resume"]).path
        if not Run(run_dir).config_path.exists():
            raise CharforgeError(f"{params['resume']} is not a run directory or a checkpoint in one.")
    elif params.get("corpus") is None:
        raise click.UsageError("give a CORPUS to train on, or --resume a run.")
    else:  # the child would reject these too, but a one-line error beats a screen that says "failed"
        from charforge.cli.intervals import config_fields

        TrainConfig(**{**config_fields(params), "corpus": params["corpus"]}).check()
    source = TrainProcess(child_args(ctx), runs_dir=params.get("runs_dir") or "runs", run_dir=run_dir,
                          name=params.get("name"))
    run_app(lambda: _train_screen(source))


def _train_screen(source):
    from charforge.tui.screens.train import TrainScreen

    return TrainScreen(source)


def watch(run_dir: str) -> None:
    """``charforge watch PATH``: follow a run started elsewhere, or a grid (``charforge compare``'s
    directory, which holds a grid.json) on the grid screen; quitting leaves either going."""
    from charforge.tui.sources.grid import GridDirectory, is_grid

    if is_grid(run_dir):
        grid = GridDirectory(run_dir)
        run_app(lambda: _grid_screen(grid))
        return
    from charforge.tui.sources.tail import AttachedRun

    source = AttachedRun(run_dir)
    run_app(lambda: _train_screen(source))


def _grid_screen(source):
    from charforge.tui.screens.grid import GridScreen

    return GridScreen(source)


def sample(target: str, which: str, device: str, prompt: str, settings, seed: int | None,
           precision: str = "auto") -> None:
    """``charforge sample CHECKPOINT --tui``: the sampling screen, starting from these settings."""
    from charforge.tui.models import CheckpointModels
    from charforge.tui.screens.sample import SampleScreen

    models = CheckpointModels(target, device=device, which=which, precision=precision)
    start = replace(settings, temperature=0.0 if settings.greedy else settings.temperature, greedy=False)
    run_app(lambda: SampleScreen(models, start, prompt, seed))


def inspect(target: str, which: str, device: str, text: str) -> None:
    """``charforge inspect RUN TEXT --tui``: the inspect screen on this text, editable there."""
    from charforge.tui.models import CheckpointModels
    from charforge.tui.screens.inspect import InspectScreen

    models = CheckpointModels(target, device=device, which=which)
    run_app(lambda: InspectScreen(models, text))
