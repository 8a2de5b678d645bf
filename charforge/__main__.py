"""``python -m charforge``: the same command line as the ``charforge`` script.

``-m`` puts the current folder first on the import path; it is taken off again before anything
else is imported, so that a folder holding a module named like a plugin (``charforge_builtins``,
say) cannot run its code: plugins come from what is installed, as with the ``charforge`` script.
"""

import os
import sys

if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from charforge.cli import main  # noqa: E402

main()
