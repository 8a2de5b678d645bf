"""The one exception type charforge shows to users as a single line, without a traceback, the one
way it warns, and how its messages quote a value."""

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


def shown(value, width: int = 60) -> str:
    """A value as an error message quotes it: its repr, cut to ``width`` (a hostile value may be huge)."""
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print
        return "an integer of thousands of digits"
    return text if len(text) <= width else text[:width - 3] + "..."
