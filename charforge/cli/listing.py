"""``charforge plugins``, ``cells``, ``optimizers``, ``corpora`` and ``tasks``: what the installed plugins provide."""

from __future__ import annotations

import json

import click

from charforge.cli.common import registry


@click.command()
def plugins():
    """The installed plugins as JSON: name, version, hooks and what each provides."""
    click.echo(json.dumps(registry().describe_plugins(), indent=2))


def _listing(kind: str, as_json: bool) -> None:
    items = registry().items(kind)
    rows = []
    for item in items:
        obj = item.obj
        options = {name: opt.describe() for name, opt in getattr(obj, "options", {}).items()}
        rows.append({"name": item.name, "plugin": item.plugin, "help": getattr(obj, "help", ""),
                     "options": options, **({"uses_time": obj.uses_time} if kind == "cell" else {})})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['name']}  (plugin {row['plugin']})  {row['help']}")
        for name, opt in row["options"].items():
            choices = f" {{{', '.join(map(str, opt['choices']))}}}" if "choices" in opt else ""
            click.echo(f"    {name} = {opt['default']!r}{choices}  {opt['help']}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def cells(as_json):
    """The recurrent cells the installed plugins provide, with their options."""
    _listing("cell", as_json)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def optimizers(as_json):
    """The optimizers the installed plugins provide, with their options."""
    _listing("optimizer", as_json)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def corpora(as_json):
    """The named corpora the installed plugins provide."""
    _listing("corpus", as_json)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def tasks(as_json):
    """The tasks the installed plugins provide (train one with `charforge train TASK -T KEY VALUE`)."""
    _listing("task", as_json)
