"""``check_optimizer``: the optimizer contract, on a least-squares problem and a tiny resumed run."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from charforge.testing.common import SEED, check_options, fail, managers_for, train_and_resume


def check_optimizer(spec, **options) -> None:
    """Check the optimizer contract for ``spec`` (an OptimizerSpec) with ``options``; raise
    :class:`ContractError` naming the first property that fails. In order: declaration, options
    round-trip, builds from an iterator of parameters, the loss goes down, honours the learning rate
    it is given, state serialisable, and resume from a checkpoint. About a second."""
    import torch

    from charforge.optim import OptimizerSpec

    if not isinstance(spec, OptimizerSpec):
        fail("declaration", f"{spec!r} is not a charforge.plugin.OptimizerSpec")
    resolved = check_options(f"optimizer {spec.name!r}", spec.options, options)
    torch.manual_seed(SEED)
    a = torch.randn(16, 3, dtype=torch.float64)
    target = a @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    weight, bias = torch.zeros(3, dtype=torch.float64, requires_grad=True), torch.zeros(1, dtype=torch.float64,
                                                                                        requires_grad=True)
    params = [weight, bias]
    prop = "builds from an iterator of parameters"
    optimizer = spec.build(iter(params), lr=0.05, **resolved)
    kept = [p for group in optimizer.param_groups for p in group["params"]]
    if len(kept) != len(params) or any(p is not q for p, q in zip(kept, params)):
        fail(prop, f"the optimizer holds {len(kept)} of the {len(params)} parameters it was given")

    def loss():
        return ((a @ weight + bias - target) ** 2).mean()

    with torch.no_grad():
        first = float(loss())
    for _ in range(30):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    with torch.no_grad():
        last = float(loss())
    if not last < first:
        fail("the loss goes down", f"30 steps on a least-squares problem take its loss from {first:.4g} to "
                                   f"{last:.4g}")
    prop = "honours the learning rate it is given"
    for group in optimizer.param_groups:  # what the trainer's schedule does before every step
        group["lr"] = 0.0
    before = [p.detach().clone() for p in params]
    optimizer.zero_grad()
    loss().backward()
    optimizer.step()
    for i, (p, q) in enumerate(zip(params, before)):
        if not torch.equal(p, q):
            moved = float((p - q).detach().abs().max())
            fail(prop, f"parameter {i} moved by up to {moved:.3g} with every group's lr 0")
    _check_serialisable(optimizer.state_dict())
    with tempfile.TemporaryDirectory(prefix="charforge-check-") as tmp:
        train_and_resume({"cell": "rnn", "optimizer": spec.name, "optimizer_options": dict(options)},
                         managers_for("optimizer", spec), Path(tmp))


def _check_serialisable(state: dict) -> None:
    """What is not a tensor goes into a checkpoint's JSON: numbers, booleans, strings or None."""
    import torch

    prop = "state serialisable"
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if not isinstance(value, (torch.Tensor, int, float, bool, str, type(None))):
                fail(prop, f"state {key!r} of parameter {idx} is a {type(value).__name__}, not a tensor or a "
                           f"JSON number, boolean, string or null")
    try:
        json.dumps([{k: v for k, v in g.items() if k != "params"} for g in state["param_groups"]])
    except (TypeError, ValueError) as exc:
        fail(prop, f"the parameter groups are not JSON ({exc})")
