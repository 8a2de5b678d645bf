"""``python -m charforge``: the same command line as the ``charforge`` script."""

from charforge.cli import main

main()
