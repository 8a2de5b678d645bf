"""The plugin manager: built from installed entry points by a factory, never at import time.

Built-in plugins and third-party ones come through the same ``charforge`` entry-point group,
so any of them can be listed, blocked (``CHARFORGE_BLOCK_PLUGINS=a,b``) or replaced.
``CHARFORGE_PLUGINS=a,b`` is an allow-list: when set, only those entry points load. A plugin that
does not fit the contract (a hook misspelled, an argument no hook has, a newer contract version) is
refused in one line naming it, before anything runs, rather than have a hook silently never called:
an installed one is skipped with a warning, as one that fails to import is (so that the others, and
``charforge plugins``, still work), one handed over in code raises CharforgeError.
"""

from __future__ import annotations

import difflib
import inspect
import os
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Iterable

import pluggy

from charforge import hookspecs
from charforge.errors import CharforgeError, unknown_name, warn
from charforge.hookspecs import CONTRACT

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
        self.labels: dict[str, str] = {}  # registered name -> the name messages use

    def distribution(self, plugin_name: str) -> tuple[str | None, str | None]:
        """(distribution, version) of a plugin; (None, None) for one registered in code."""
        return self.distributions.get(plugin_name, (None, None))

    def add(self, plugin: Any, name: str | None = None) -> None:
        """Register ``plugin`` once it is checked against the contract (:func:`check_plugin`)."""
        label = name or getattr(plugin, "__name__", None) or type(plugin).__name__  # not an id, in messages
        check_plugin(self, plugin, label)
        try:
            self.labels[self.register(plugin, name=name)] = label
        except pluggy.PluginValidationError as exc:  # what check_plugin leaves to pluggy (a wrapper misused...)
            raise CharforgeError(f"plugin {label!r} is refused: {' '.join(str(exc).split())}") from None

    def culprit(self, hook_name: str, error: BaseException) -> str | None:
        """The name of the plugin whose ``hook_name`` implementation raised ``error``, found in its traceback
        (the outermost frame running an implementation's code, for the instance it is bound to)."""
        impls = [(getattr(impl.function, "__code__", None), getattr(impl.function, "__self__", None),
                  self.labels.get(impl.plugin_name, impl.plugin_name))
                 for impl in getattr(self.hook, hook_name).get_hookimpls()]
        tb = error.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            for code, owner, name in impls:
                if frame.f_code is code and (owner is None or frame.f_locals.get("self") is owner):
                    return name
            tb = tb.tb_next
        return None


def check_plugin(pm: pluggy.PluginManager, plugin: Any, name: str) -> None:
    """Refuse, in one line, a plugin for a newer contract, a misspelled hook or an argument its hook lacks."""
    contract = getattr(plugin, "charforge_contract", CONTRACT)
    if not isinstance(contract, int) or isinstance(contract, bool):
        raise CharforgeError(f"plugin {name!r} declares charforge_contract = {contract!r}; it must be a whole number.")
    if contract > CONTRACT:
        raise CharforgeError(f"plugin {name!r} needs plugin contract {contract}; this charforge has {CONTRACT}: "
                             "upgrade charforge.")
    hooks = {hook: caller.spec.argnames for hook, caller in vars(pm.hook).items()
             if isinstance(caller, pluggy.HookCaller) and caller.spec is not None}
    for attr in dir(plugin):
        opts = pm.parse_hookimpl_opts(plugin, attr)
        if opts is None:
            continue
        hook = opts.get("specname") or attr
        if hook not in hooks:
            if opts.get("optionalhook"):
                continue
            close = difflib.get_close_matches(hook, sorted(hooks), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else f" Hooks: {', '.join(sorted(hooks))}."
            raise CharforgeError(f"plugin {name!r} implements {hook!r}, which is not a charforge hook.{hint}")
        asked = [p.name for p in inspect.signature(getattr(plugin, attr)).parameters.values()
                 if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                 and p.name != "self"]
        unknown = [arg for arg in asked if arg not in hooks[hook]]
        if unknown:
            raise CharforgeError(f"plugin {name!r} implements {hook}({', '.join(asked)}), but {hook} has no "
                                 f"argument {unknown[0]!r}: it is called with {', '.join(hooks[hook])}.")


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
                pm.add(ep.load(), name=ep.name)
            except CharforgeError as exc:  # one broken plugin must not take the others down
                warn(f"{exc} It is skipped.")
                continue
            except Exception as exc:
                warn(f"plugin {ep.name!r} failed to load and is skipped: {type(exc).__name__}: {exc}")
                continue
            pm.distributions[ep.name] = (ep.dist.name, ep.dist.version) if ep.dist else (None, None)
    for plugin in extra:
        pm.add(plugin)
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
