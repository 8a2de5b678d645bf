"""What the kit's checks share: the error they raise, tolerant comparison, a tiny text, and runs
trained, resumed and compared through charforge's own trainer."""

from __future__ import annotations

import json
import random
import types
from pathlib import Path
from typing import Callable

from charforge.errors import CharforgeError

SEED = 0
TOLERANCE = 1e-6  # paths compared in float64: only a different computation gets this far apart
RESUME_STEPS = 4  # a run of this many steps must equal half of them, a resume and the rest


class ContractError(AssertionError):
    """A plugin breaks the contract: ``property`` names what failed, the message says by how much."""

    def __init__(self, prop: str, detail: str):
        super().__init__(f"{prop}: {detail}")
        self.property = prop


def tiny_text(chars: int = 3000, seed: int = SEED) -> str:
    """Lines of made-up words from a few syllables: a text with structure to learn, and none to ship."""
    rng = random.Random(seed)
    syllables = ("ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "po", "an", "el")
    lines, size = [], 0
    while size < chars:
        words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(3, 8))]
        line = " ".join(words).capitalize() + rng.choice(".!?,;")
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)[:chars] + "\n"


def quiet_plugin_manager(extra=(), block=()):
    """The installed plugins plus ``extra``, without the console plugin (no progress output in tests)."""
    from charforge.plugins import make_plugin_manager

    return make_plugin_manager(extra=extra, block=["console", *block])



def fail(prop: str, detail: str):
    raise ContractError(prop, detail)


def close(prop: str, what: str, got, want, tol: float = TOLERANCE) -> None:
    """``got`` equals ``want`` within ``tol`` (absolute and relative), else the largest difference."""
    import torch

    if got is None or want is None:
        if got is not want:
            fail(prop, f"{what} is {'missing' if got is None else 'present'} on one path only")
        return
    if tuple(got.shape) != tuple(want.shape):
        fail(prop, f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}")
    if not torch.allclose(got, want, rtol=tol, atol=tol):
        diff = float((got - want).detach().abs().max())
        fail(prop, f"{what} differs by up to {diff:.3g} (tolerance {tol:g})")


def provider(hook: str, obj) -> types.ModuleType:
    """A plugin module that registers ``obj`` through ``hook``, as a package's module would."""
    from charforge.hookspecs import hookimpl

    module = types.ModuleType(f"charforge-testing-{obj.name}")

    def register(register):
        register(obj)

    setattr(module, hook, hookimpl(register))
    return module


def managers_for(kind: str, obj) -> Callable:
    """A factory of plugin managers in which ``obj`` is the ``kind`` of its name: the installed one
    when it is ``obj`` itself, else ``obj`` registered in code, blocking an installed namesake."""
    from charforge.plugins import Registry

    installed = Registry(quiet_plugin_manager())
    if obj.name in installed.names(kind):
        found = installed.get(kind, obj.name)
        if found.obj is obj:
            return quiet_plugin_manager
        return lambda: quiet_plugin_manager([provider(Registry.KINDS[kind], obj)], [found.plugin])
    return lambda: quiet_plugin_manager([provider(Registry.KINDS[kind], obj)])


def check_options(owner: str, spec: dict, given: dict) -> dict:
    """The options resolved, and the same again from the strings a command line gives and from the
    JSON a checkpoint stores."""
    from charforge.options import resolve_options

    prop = "options round-trip"
    try:
        resolved = resolve_options(owner, spec, given)
    except CharforgeError as exc:
        fail(prop, f"the options given do not resolve ({exc})")
    strings = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in resolved.items()
               if isinstance(v, (bool, int, float, str))}
    for source, values in (("command-line strings", strings), ("JSON", json.loads(json.dumps(resolved)))):
        again = resolve_options(owner, spec, values)
        if again != resolved:
            fail(prop, f"from {source} the options are {again!r}, not {resolved!r}")
    return resolved


def train_and_resume(config: dict, managers: Callable, root: Path) -> tuple[Path, dict]:
    """Train ``RESUME_STEPS`` steps in one go, and half of them, a resume and the rest; raise naming
    the first step whose loss differs, or a weight that does, between the two. Returns the halves'
    run directory and its final configuration."""
    import torch

    from charforge.config import TrainConfig
    from charforge.runs.checkpoint import load_checkpoint
    from charforge.runs.directory import Run
    from charforge.trainer import Trainer

    prop = "resume from a checkpoint"
    corpus = root / "corpus.txt"
    corpus.write_text(tiny_text(), encoding="utf-8")
    settings = dict(corpus=str(corpus), hidden_size=8, num_layers=2, embedding_dim=4, batch_size=2, seq_len=8,
                    lr=1e-3, schedule="constant", seed=SEED, device="cpu", threads=1, log_every=1,
                    eval_every=1000, sample_length=10, **config)
    runs = root / "runs"
    try:
        Trainer(TrainConfig(**settings, steps=RESUME_STEPS), pm=managers(), runs_root=runs, name="one-go").run()
        Trainer(TrainConfig(**settings, steps=RESUME_STEPS // 2), pm=managers(), runs_root=runs, name="halves").run()
        resumed = Trainer.resume(runs / "halves", {"steps": RESUME_STEPS}, pm=managers())
        if resumed.step != RESUME_STEPS // 2:
            fail(prop, f"the resumed run starts at step {resumed.step}, not {RESUME_STEPS // 2}")
        resumed.run()
    except CharforgeError as exc:  # refused options, divergence, a checkpoint that does not load
        fail(prop, f"a tiny run of {RESUME_STEPS} steps fails: {exc}")

    def losses(run: str) -> list:
        return [(e["step"], e["loss"]) for e in Run(runs / run).events() if e["event"] == "step"]

    one_go, halves = losses("one-go"), losses("halves")
    if len(one_go) != RESUME_STEPS:
        fail(prop, f"the run logged {len(one_go)} steps, not {RESUME_STEPS}")
    for a, b in zip(one_go, halves):
        if a != b:
            fail(prop, f"at step {a[0]} the loss is {b[1]!r} after a resume, {a[1]!r} without")
    want, got = (load_checkpoint(runs / run, which="latest").group("model") for run in ("one-go", "halves"))
    for name in want:
        if name not in got or not torch.equal(want[name], got[name]):
            fail(prop, f"weight {name} differs after a resume")
    return runs / "halves", resumed.config.to_dict()
