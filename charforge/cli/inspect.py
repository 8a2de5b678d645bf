"""``charforge inspect``: what a trained model computes on a text, in the terminal (coloured surprisal
or units, the units that track the text's features, gate saturation, a time cell's clock, the
predictions at each position), in a self-contained HTML report and in PNG plots."""

from __future__ import annotations

import os
import sys

import click

from charforge.errors import CharforgeError, shown, warn


def _units(ctx, param, values) -> list[tuple[int, str, int]]:
    """``--unit LAYER:UNIT[:NAME]`` values as (layer, name, unit); the name is ``h`` unless given."""
    out = []
    for value in values:
        parts = value.split(":", 2)
        try:
            layer, unit = int(parts[0]), int(parts[1])
        except (ValueError, IndexError):
            raise click.BadParameter(f"a unit is LAYER:UNIT[:NAME] (such as 0:17 or 0:17:c), not {shown(value)}.",
                                     param=param) from None
        name = parts[2] if len(parts) == 3 else "h"
        if layer < 0 or unit < 0 or not name:
            raise click.BadParameter(f"a unit is LAYER:UNIT[:NAME] with a layer and unit from 0, not "
                                     f"{shown(value)}.", param=param)
        out.append((layer, name, unit))
    return out


def _range(ctx, param, value) -> tuple[int, int | None] | None:
    """``--at START:END`` as (start, end); either side may be left out."""
    if value is None:
        return None
    start, sep, end = value.partition(":")
    try:
        bounds = (int(start) if start.strip() else 0, int(end) if end.strip() else None)
    except ValueError:
        bounds = None
    if not sep or bounds is None or bounds[0] < 0 or (bounds[1] is not None and bounds[1] <= bounds[0]):
        raise click.BadParameter(f"a range is START:END with 0 <= START < END (either may be left out), not "
                                 f"{shown(value)}.", param=param)
    return bounds


def read_text(source: str | None) -> str:
    """The text to inspect: standard input for None or ``-``, an existing file's contents (UTF-8),
    or else ``source`` itself."""
    if source is None or source == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise CharforgeError("no text: give TEXT_OR_FILE, or pipe the text on standard input.")
        data, name = sys.stdin.buffer.read(), "standard input"
    elif os.path.isdir(source):
        raise CharforgeError(f"{source} is a folder; give a file, or the text itself.")
    elif os.path.isfile(source):
        with open(source, "rb") as file:
            data, name = file.read(), source
    else:
        return source
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CharforgeError(f"{name} is not UTF-8 text: byte {exc.start:,} (0x{data[exc.start]:02x}) "
                             f"is not valid there.") from None


def _known(text: str, vocab) -> str:
    """``text`` without the characters the model does not know, said in one warning line."""
    missing = vocab.unknown(text)
    if not missing:
        return text
    kept = vocab.decode(vocab.encode(text, drop_unknown=True))
    if not kept:
        raise CharforgeError(f"nothing to inspect: the model knows none of the text's characters "
                             f"({shown(''.join(missing), 40)}).")
    warn(f"dropped {len(text) - len(kept):,} character(s) the model does not know "
         f"({len(missing)} distinct: {shown(''.join(missing), 40)}).")
    return kept


@click.command()
@click.argument("checkpoint")
@click.argument("text_or_file", required=False)
@click.option("--unit", "units", multiple=True, metavar="L:U[:NAME]", callback=_units,
              help="Colour the text by this unit of layer L (repeatable: one view each). NAME is h (the "
                   "default), c, gate.f, time.k...: what the cell exposes.")
@click.option("--find", is_flag=True, help="Rank the units by how well they track the text's features: inside "
                                           "quotes, bracket depth, position in the line, word start, upper case, "
                                           "digit, and each --feature.")
@click.option("--feature", "features", multiple=True, metavar="NAME=REGEX",
              help="A feature for --find (implied): 1 inside every match of REGEX (repeatable).")
@click.option("--top", default=3, show_default=True, type=int, help="Units listed per feature.")
@click.option("--predictions", is_flag=True, help="A table: each character, its bits and the top-5 predictions.")
@click.option("--at", "at", metavar="START:END", callback=_range, help="The positions --predictions lists.")
@click.option("--gates", is_flag=True, help="How often each gate's units are saturated (below 0.1, above 0.9).")
@click.option("--time", "clock", is_flag=True, help="A time cell's learned periods and open ratios.")
@click.option("--html", metavar="FILE", help="Write a self-contained HTML report here.")
@click.option("--png", metavar="DIR", help="Write PNG plots into this folder.")
@click.option("--color", is_flag=True, help="Colour even when the output is not a terminal (NO_COLOR still wins).")
@click.option("--which", type=click.Choice(["best", "latest"]), default="best", show_default=True,
              help="Which checkpoint of a run directory.")
@click.option("--device", default="auto", show_default=True, help="auto (a GPU when there is one), cpu, cuda or mps.")
@click.option("--threads", default=0, type=int, help="CPU threads (0: PyTorch's default).")
@click.option("--tui", is_flag=True, help="Inspect interactively in the terminal UI, starting from this text.")
def inspect(checkpoint, text_or_file, units, find, features, top, predictions, at, gates, clock, html, png, color,
            which, device, threads, tui):
    """Show what CHECKPOINT (a run directory or .safetensors file) computes on TEXT_OR_FILE (a file's
    contents, else the argument itself; standard input when left out or -): each character coloured
    by its surprisal, the bits per character and the most surprising spans, or the views asked for."""
    if top < 1:
        raise CharforgeError(f"--top must be at least 1, not {top}.")
    if at is not None and not predictions:
        raise CharforgeError("--at chooses the positions --predictions lists; add --predictions.")
    if tui:
        views = [flag for flag, given in (("--unit", units), ("--find", find), ("--feature", features),
                                          ("--predictions", predictions), ("--gates", gates), ("--time", clock),
                                          ("--html", html), ("--png", png)) if given]
        if views:
            raise CharforgeError(f"--tui opens the inspect screen, which has views of its own; leave out "
                                 f"{', '.join(views)}.")
        if text_or_file in (None, "-") and not (sys.stdin is None or sys.stdin.isatty()):
            raise CharforgeError("--tui reads the keyboard, so the text cannot come on standard input; give "
                                 "TEXT_OR_FILE.")
        from charforge.tui import commands

        return commands.inspect(checkpoint, which, device, "" if text_or_file is None else read_text(text_or_file))
    for flag, path in (("--html", html and os.path.dirname(os.path.abspath(html))), ("--png", png)):
        if path and os.path.exists(path) and not os.path.isdir(path):
            raise CharforgeError(f"{flag}: {path} is not a folder.")
        if path and flag == "--html" and not os.path.isdir(path):
            raise CharforgeError(f"--html: the folder {path} does not exist.")
    from charforge.inspection.features import parse_features

    patterns = parse_features(features)  # checked before the model loads
    text = read_text(text_or_file)
    if not text:
        raise CharforgeError("nothing to inspect: the text is empty.")
    inspection = _inspect(checkpoint, which, device, threads, text)
    _show(inspection, units, find or bool(patterns), patterns, top, predictions, at, gates, clock, color, html, png)


def _inspect(checkpoint, which, device, threads, text):
    from charforge.api import Model
    from charforge.sampling.loading import load_engine
    from charforge.threads import ThreadTuner

    if threads:  # a count past the cores this process may use is capped, with a warning, as everywhere
        ThreadTuner(threads).start()
    model = Model.of(load_engine(checkpoint, which, device, "float32"))
    return model.inspect(_known(text, model.vocab))


def _show(inspection, units, find, patterns, top, predictions, at, gates, clock, color, html, png):
    from rich.console import Console

    from charforge.inspection import terminal
    from charforge.inspection.features import find_units, text_features

    console = Console(force_terminal=True if color else None, highlight=False)
    for layer, name, unit in units:
        view, scale = terminal.activation(inspection, layer, unit, name)  # an unknown unit: one line, first
        console.print(f"layer {layer}, unit {unit} ({name}):")
        console.print(view, soft_wrap=True)
        console.print(scale)
    found = find_units(inspection, text_features(inspection.text, patterns), top) if find else None
    if found is not None:
        console.print(terminal.find_table(found))
    if gates:
        if not inspection.saturation():
            raise CharforgeError("this model's cell shows no gates (gate.* traces) to inspect.")
        console.print(terminal.gates_table(inspection))
    if clock:
        if not inspection.clocks:
            raise CharforgeError("this model's cell has no clock: --time is for cells that read time "
                                 "(such as phased-lstm).")
        console.print(terminal.clock_table(inspection))
    if predictions:
        start, end = at or (0, None)
        if start >= len(inspection):
            raise CharforgeError(f"--at starts at {start}, past the text's {len(inspection):,} characters.")
        console.print(terminal.predictions_table(inspection, start, min(end or len(inspection), len(inspection))))
    if not (units or find or gates or clock or predictions):
        view, scale = terminal.surprisal(inspection)
        console.print(view, soft_wrap=True)
        console.print(scale)
        console.print(terminal.spans_table(inspection))
    console.print(terminal.summary(inspection))
    _write(inspection, html, png, found, units)


def _write(inspection, html, png, found, units):
    """The report and the plots, where asked for; each file written is named on stderr."""
    if html:
        from charforge.inspection.report import write_report

        write_report(inspection, html, found=found, units=units)
        click.echo(f"wrote {html}", err=True)
    if png:
        from charforge.inspection.plots import write_plots

        for path in write_plots(inspection, png, found=found, units=units):
            click.echo(f"wrote {path}", err=True)
