"""charforge's terminal UI, built with Textual.

Only the TUI commands import this package (``charforge train --tui``, ``charforge watch``,
``charforge sample --tui``, ``charforge inspect --tui``); the core never does. The screens read
everything through injected sources (``sources`` for run events, ``models`` for sampling and
inspecting), so tests feed them fake data and the trainer knows nothing about the UI.
"""
