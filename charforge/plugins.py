"""The plugin manager: built from installed entry points by a factory, never at import time.

Built-in plugins and third-party ones come through the same ``charforge`` entry-point group,
so any of them can be listed, blocked (``CHARFORGE_BLOCK_PLUGINS=a,b``) or replaced.
``CHARFORGE_PLUGINS=a,b`` is an allow-list: when set, only those entry points load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Iterable

import pluggy

from charforge import hookspecs
from charforge.errors import CharforgeError, unknown_name, warn

GROUP = "charforge"


def _names_from_env(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, remembering which distribution installed each entry-point plugin."""

    def __init__(self) -> None:
        super().__init__(GROUP)
        self.distributions: dict[str, tuple[str | None, str | None]] = {}

    def distribution(self, plugin_name: str) -> tuple[str | None, str | None]:
        """(distribution, version) of a plugin; (None, None) for one registered in code."""
        return self.distributions.get(plugin_name, (None, None))


def make_plugin_manager(extra: Iterable[Any] = (), block: Iterable[str] = (),
                        load_entry_points: bool = True) -> PluginManager:
    """A plugin manager with every allowed installed plugin, plus ``extra`` plugin objects."""
    pm = PluginManager()
    pm.add_hookspecs(hookspecs)
    blocked = (_names_from_env("CHARFORGE_BLOCK_PLUGINS") or set()) | set(block)
    allowed = _names_from_env("CHARFORGE_PLUGINS")
    if load_entry_points:
        installed = sorted(entry_points(group=GROUP), key=lambda e: e.name)
        if allowed == set():
            warn("CHARFORGE_PLUGINS is set but names no plugin, so none loads (no cells, optimizers or corpora); "
                 "unset it to load every installed plugin.")
        for var in ("CHARFORGE_BLOCK_PLUGINS", "CHARFORGE_PLUGINS"):  # a typo there would pass unnoticed
            unknown = sorted((_names_from_env(var) or set()) - {ep.name for ep in installed})
            if unknown:
                warn(f"{var} names {', '.join(map(repr, unknown))}, but no installed plugin has that name "
                     f"(installed: {', '.join(ep.name for ep in installed) or 'none'}).")
        for ep in installed:
            if ep.name in blocked or (allowed is not None and ep.name not in allowed):
                pm.set_blocked(ep.name)
                pm.distributions[ep.name] = (ep.dist.name, ep.dist.version) if ep.dist else (None, None)
                continue
            if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
            except Exception as exc:  # one broken plugin must not take the others down
                warn(f"plugin {ep.name!r} failed to load and is skipped: {type(exc).__name__}: {exc}")
                continue
            pm.distributions[ep.name] = (ep.dist.name, ep.dist.version) if ep.dist else (None, None)
    for plugin in extra:
        pm.register(plugin)
    return pm


@dataclass(frozen=True)
class Provided:
    """Something a plugin registered, with where it came from."""

    name: str
    obj: Any
    plugin: str
    dist: str | None
    version: str | None

    def provenance(self) -> dict:
        return {"name": self.name, "plugin": self.plugin, "dist": self.dist, "version": self.version}


class Registry:
    """What the plugins provide (cells, optimizers, corpora, tasks), collected once per plugin manager."""

    KINDS = {"cell": "register_cells", "optimizer": "register_optimizers", "corpus": "register_corpora",
             "task": "register_tasks"}

    def __init__(self, pm: PluginManager):
        self.pm = pm
        self._items: dict[str, dict[str, Provided]] = {kind: {} for kind in self.KINDS}
        for kind, hook_name in self.KINDS.items():
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                self._collect(kind, impl)

    def _collect(self, kind: str, impl) -> None:
        plugin_name = self.pm.get_name(impl.plugin) or repr(impl.plugin)
        dist, version = self.pm.distribution(plugin_name)
        table = self._items[kind]
        added: dict[str, Provided] = {}

        def register(obj) -> None:
            name = obj.name
            if name in table or name in added:
                other = (table.get(name) or added[name]).plugin
                raise CharforgeError(
                    f"{kind} {name!r} is registered by two plugins: {other!r} and {plugin_name!r}. "
                    f"Block one with CHARFORGE_BLOCK_PLUGINS={plugin_name}."
                )
            added[name] = Provided(name, obj, plugin_name, dist, version)

        try:
            impl.function(register=register)
        except CharforgeError:
            raise
        except Exception as exc:
            warn(f"plugin {plugin_name!r} failed to register its {kind}s and is skipped: "
                 f"{type(exc).__name__}: {exc}")
            return
        table.update(added)

    def names(self, kind: str) -> list[str]:
        return sorted(self._items[kind])

    def items(self, kind: str) -> list[Provided]:
        return [self._items[kind][name] for name in self.names(kind)]

    def get(self, kind: str, name: str) -> Provided:
        try:
            return self._items[kind][name]
        except KeyError:
            raise unknown_name(kind, name, self._items[kind]) from None

    def describe_plugins(self) -> list[dict]:
        """One JSON-able entry per plugin: name, version, hooks, what it provides, whether it is blocked."""
        out = []
        for name, plugin in sorted(self.pm.list_name_plugin(), key=lambda item: item[0]):
            # a blocked plugin is listed (so that users see why its cells are missing) with nothing to offer
            dist, version = self.pm.distribution(name)
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
            provides = {
                kind: [p.name for p in self.items(kind) if p.plugin == name] for kind in self.KINDS
            }
            out.append({
                "name": name,
                "distribution": dist,
                "version": version,
                "hooks": hooks,
                "provides": {k: v for k, v in provides.items() if v},
                "blocked": plugin is None,
            })
        return out
