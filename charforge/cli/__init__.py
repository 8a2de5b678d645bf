"""The ``charforge`` command line. Imports torch only inside the commands that need it.

One module per group of commands (``train``, ``sample``, ``inspect``, ``listing``, ``tasks``), the
group that joins them (``group``), and the prompt and result I/O of ``charforge generate``
(``prompts``, ``progress``).
"""

from charforge.cli.group import cli, main

__all__ = ["cli", "main"]
