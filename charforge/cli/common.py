"""What several commands share: the plugin registry, KEY VALUE pairs, the one-line error door."""

from __future__ import annotations

import click

from charforge.errors import CharforgeError


class Group(click.Group):
    """Turns charforge's user-facing errors, and option values Click rejects, into one line and exit
    status 1, never a traceback; a usage error that is not about a value keeps Click's usage lines."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.MissingParameter:  # not a bad value: the usage lines say what is missing
            raise
        except click.BadParameter as exc:  # a bad value (--steps nan) reads as any other charforge error
            raise click.ClickException(exc.format_message()) from None
        except CharforgeError as exc:
            raise click.ClickException(_rank() + str(exc)) from None
        except OSError as exc:  # a file that cannot be read or written (permissions, full disk): one line too
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{_rank()}{where}{exc.strerror or exc}.") from None


def _rank() -> str:
    """``rank N: `` in a process of several that torchrun started (its error names it), else nothing."""
    from charforge.distributed import launched

    rank, size = launched()
    return f"rank {rank}: " if size > 1 else ""


def registry(block=()):
    """The registry of the installed plugins (imported late: it is not needed for ``--help``)."""
    from charforge.plugins import Registry, make_plugin_manager

    return Registry(make_plugin_manager(block=block))


def pairs(ctx, param, value):
    """``-c KEY VALUE`` options, repeated, as a dict (None when none was given)."""
    return {k: v for k, v in value} if value else None
