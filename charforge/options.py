"""Declared, typed options for plugins (cells, optimizers), set from the command line as strings."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from charforge.errors import CharforgeError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Option:
    """One option a plugin accepts: its default, a line of help and, optionally, its choices."""

    default: Any
    help: str = ""
    choices: tuple | None = None
    type: type | None = None  # inferred from the default when None

    @property
    def value_type(self) -> type:
        return self.type or type(self.default)

    def parse(self, owner: str, name: str, value: Any) -> Any:
        kind = self.value_type
        try:
            if isinstance(value, str) and kind is not str:
                if kind is bool:
                    low = value.lower()
                    if low not in _TRUE | _FALSE:
                        raise ValueError
                    value = low in _TRUE
                else:
                    value = kind(value)
            elif kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            elif not isinstance(value, kind):
                raise ValueError
        except ValueError:
            raise CharforgeError(
                f"{owner} option {name!r} takes a {kind.__name__}, not {value!r}."
            ) from None
        if self.choices is not None and value not in self.choices:
            raise CharforgeError(
                f"{owner} option {name!r} must be one of {', '.join(map(str, self.choices))}, not {value!r}."
            )
        return value

    def describe(self) -> dict:
        out = {"default": self.default, "type": self.value_type.__name__, "help": self.help}
        if self.choices is not None:
            out["choices"] = list(self.choices)
        return out


def resolve_options(owner: str, spec: dict[str, Option], given: dict[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with ``given`` (strings or values), every name checked against ``spec``."""
    unknown = sorted(set(given) - set(spec))
    if unknown:
        known = ", ".join(sorted(spec)) or "none"
        close = difflib.get_close_matches(unknown[0], list(spec), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise CharforgeError(f"{owner} has no option {unknown[0]!r}.{hint} Its options: {known}.")
    return {name: opt.parse(owner, name, given[name]) if name in given else opt.default
            for name, opt in spec.items()}
