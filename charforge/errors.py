"""The one exception type charforge shows to users as a single line, without a traceback, and the
one way it warns."""

import difflib
import sys


class CharforgeError(Exception):
    """A problem with the user's input or files; its message is the whole explanation."""


def unknown_name(kind: str, name: str, known) -> CharforgeError:
    """An error for an unknown ``name``, listing the known ones and the nearest match."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return CharforgeError(f"unknown {kind} {name!r}.{hint} Known: {', '.join(known) or 'none'}.")


def warn(message: str) -> None:
    """One line on stderr, even for an exception whose message spans several (pluggy's do)."""
    print(f"charforge: warning: {' '.join(message.split())}", file=sys.stderr)
