"""``check_cell``: every property of the cell contract charforge relies on, checked on a tiny cell,
a tiny run and its checkpoint."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

from charforge.testing.common import SEED, check_options, close, fail, managers_for, train_and_resume

INPUT, HIDDEN, BATCH, STEPS = 3, 4, 2, 6  # the sizes the cell checks build and run
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}  # gate blocks in each step kernel's weights


class _StepByStep:
    """Made a subclass of the model's class: a ``step`` of its own keeps the engine off the fast loop."""

    def step(self, tokens, state, t=None):
        return super().step(tokens, state, t)


def check_cell(cell_class, **options) -> None:
    """Check the cell contract for ``cell_class`` built with ``options`` (values or the strings a
    command line gives); raise :class:`ContractError` naming the first property that fails. In
    order: declaration, options round-trip, shapes, state in and out, step and forward agree,
    step and forward_stack agree, step and step_kernel agree, state carried across windows,
    deterministic under a seed, timestamps honoured, inspection (``inspect`` and ``clock``), resume
    from a checkpoint, sampling, and step_kernel serves generation. A second or two: it trains tiny runs."""
    import torch

    from charforge.cell import Cell

    prop = "declaration"
    if not (isinstance(cell_class, type) and issubclass(cell_class, Cell)):
        fail(prop, f"{cell_class!r} is not a subclass of charforge.plugin.Cell")
    if not isinstance(getattr(cell_class, "name", None), str) or not cell_class.name:
        fail(prop, f"{cell_class.__name__} has no name")
    if not isinstance(cell_class.state_count, int) or cell_class.state_count < 1:
        fail(prop, f"state_count is {cell_class.state_count!r}, not a count of at least 1")
    resolved = check_options(f"cell {cell_class.name!r}", cell_class.options, options)

    def build(input_size: int, seed: int = SEED):
        torch.manual_seed(seed)
        try:
            cell = cell_class(input_size, HIDDEN, **resolved)
        except TypeError as exc:
            fail("options round-trip", f"the constructor does not take the declared options ({exc})")
        return cell.double()

    cell = build(INPUT)
    x, t = _inputs(INPUT, cell_class.uses_time)
    state = _random_state(cell)
    _check_shapes(cell, x, state, t)
    _check_step_agrees(cell, x, state, t)
    _check_stack(cell_class, build, x, t)
    _check_kernel(cell, x[:, 0], state)
    _check_carry(cell, x, state, t)
    _check_seed(build, x, state, t)
    if cell_class.uses_time:
        _check_time(cell, x, state, t)
    _check_inspect(cell, x, state, t)
    managers = managers_for("cell", cell_class)
    with tempfile.TemporaryDirectory(prefix="charforge-check-") as tmp:
        run_dir, config = train_and_resume({"cell": cell_class.name, "cell_options": dict(options)}, managers,
                                           Path(tmp))
        if config["cell_options"] != resolved:
            fail("options round-trip", f"the run stored {config['cell_options']!r}, not {resolved!r}")
        _check_sampling(run_dir, managers, cell.step_kernel() is not None)


def _inputs(input_size: int, uses_time: bool):
    import torch

    g = torch.Generator().manual_seed(SEED + 1)
    x = torch.randn(BATCH, STEPS, input_size, generator=g, dtype=torch.float64)
    t = torch.arange(STEPS, dtype=torch.float64) + torch.tensor([[0.0], [5.0]], dtype=torch.float64)
    return x, t if uses_time else None


def _random_state(cell):
    """A non-zero state (zeros would hide a path that ignores it), requiring gradients."""
    import torch

    g = torch.Generator().manual_seed(SEED + 2)
    return tuple((0.5 * torch.randn(BATCH, cell.hidden_size, generator=g, dtype=torch.float64)).requires_grad_()
                 for _ in range(cell.state_count))


def _check_state(prop: str, what: str, state, cell) -> None:
    import torch

    if not isinstance(state, tuple) or len(state) != cell.state_count:
        fail(prop, f"{what} is {type(state).__name__} of {len(state) if isinstance(state, (tuple, list)) else '?'}"
                   f" entries, expected a tuple of state_count = {cell.state_count} tensors")
    for i, s in enumerate(state):
        if not isinstance(s, torch.Tensor) or tuple(s.shape) != (BATCH, cell.hidden_size):
            fail(prop, f"{what}[{i}] has shape {tuple(getattr(s, 'shape', ()))}, expected "
                       f"{(BATCH, cell.hidden_size)}")


def _check_shapes(cell, x, state, t) -> None:
    import torch

    prop = "shapes"
    initial = cell.initial_state(BATCH, dtype=torch.float64)
    _check_state(prop, "initial_state(batch)", initial, cell)
    if any(s.dtype != torch.float64 for s in initial):
        fail(prop, "initial_state ignores the dtype it is asked for")
    out, new = cell(x, state, t)
    if tuple(out.shape) != (BATCH, STEPS, cell.hidden_size):
        fail(prop, f"forward's output has shape {tuple(out.shape)}, expected {(BATCH, STEPS, cell.hidden_size)}")
    _check_state(prop, "forward's state", new, cell)
    h, new = cell.step(x[:, 0], state, None if t is None else t[:, 0])
    if tuple(h.shape) != (BATCH, cell.hidden_size):
        fail(prop, f"step's output has shape {tuple(h.shape)}, expected {(BATCH, cell.hidden_size)}")
    _check_state(prop, "step's state", new, cell)
    other, _ = cell(x, tuple(s * 0.5 + 0.25 for s in state), t)
    if torch.allclose(out, other, rtol=0, atol=1e-12):
        fail("state in and out", "the output does not depend on the state passed in")


def _run(cell, path, x, state, t, probes):
    """Outputs, final state and the gradients of a probe of both w.r.t. input, state and parameters."""
    import torch

    xs = x.detach().requires_grad_()
    start = tuple(s.detach().requires_grad_() for s in state)
    out, final = path(xs, start, t)
    probe_out, probe_state = probes
    loss = (out * probe_out).sum() + sum((s * p).sum() for s, p in zip(final, probe_state))
    params = [p for p in cell.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [xs, *start, *params], allow_unused=True)
    names = ["input", *(f"state[{i}]" for i in range(len(start))),
             *(n for n, p in cell.named_parameters() if p.requires_grad)]
    return out.detach(), [s.detach() for s in final], dict(zip(names, grads))


def _probes(cell, x):
    import torch

    g = torch.Generator().manual_seed(SEED + 3)
    return (torch.randn(x.shape[0], x.shape[1], cell.hidden_size, generator=g, dtype=torch.float64),
            [torch.randn(x.shape[0], cell.hidden_size, generator=g, dtype=torch.float64)
             for _ in range(cell.state_count)])


def _compare(prop: str, got, want) -> None:
    out, state, grads = got
    close(prop, "the output", out, want[0])
    for i, (a, b) in enumerate(zip(state, want[1])):
        close(prop, f"state[{i}]", a, b)
    for name, g in grads.items():
        close(prop, f"the gradient of {name}", g, want[2][name])


def _stepped(cell):
    from charforge.cell import Cell

    return lambda x, state, t: Cell.forward(cell, x, state, t)


def _check_step_agrees(cell, x, state, t) -> None:
    """A cell that overrides ``forward`` must compute what looping ``step`` computes, in training mode."""
    from charforge.cell import Cell

    if type(cell).forward is Cell.forward:
        return
    cell.train()
    probes = _probes(cell, x)
    _compare("step and forward agree", _run(cell, cell.forward, x, state, t, probes),
             _run(cell, _stepped(cell), x, state, t, probes))


def _check_stack(cell_class, build, x, t) -> None:
    """Where the cell's ``stack_key`` groups layers the way the model would, ``forward_stack`` must
    compute what the layers compute one after another (without dropout)."""
    import torch
    from torch import nn

    if cell_class.uses_time:
        return
    prop = "step and forward_stack agree"
    layers = nn.ModuleList([build(INPUT, SEED), build(HIDDEN, SEED + 1), build(HIDDEN, SEED + 2)]).train()
    key = layers[0].stack_key(x)
    run = 1
    while key is not None and run < len(layers) and layers[run].stack_key(x) == key:
        run += 1
    if run < 2:
        return
    group = list(layers[:run])
    g = torch.Generator().manual_seed(SEED + 4)
    states = [tuple(0.5 * torch.randn(BATCH, HIDDEN, generator=g, dtype=torch.float64)
                    for _ in range(cell_class.state_count)) for _ in group]
    stacked, stacked_states = group[0].forward_stack(group, x, states, 0.0, True)
    h = x
    for i, (layer, s) in enumerate(zip(group, states)):
        h, final = _stepped(layer)(h, s, None)
        _check_state(prop, f"forward_stack's state of layer {i}", tuple(stacked_states[i]), layer)
        for j, (a, b) in enumerate(zip(stacked_states[i], final)):
            close(prop, f"layer {i}'s state[{j}]", a, b)
    close(prop, "the output", stacked, h)
    params = [p for layer in group for p in layer.parameters() if p.requires_grad]
    want = torch.autograd.grad(h.sum(), params, allow_unused=True)
    got = torch.autograd.grad(stacked.sum(), params, allow_unused=True)
    names = [f"layer {i}'s {n}" for i, layer in enumerate(group) for n, p in layer.named_parameters()
             if p.requires_grad]
    for name, a, b in zip(names, got, want):
        close(prop, f"the gradient of {name}", a, b)


def _check_kernel(cell, x, state) -> None:
    """A declared ``step_kernel`` must be exactly ``step``: its op on its weights gives step's output."""
    import torch

    from charforge.sampling.fastpath import KINDS

    prop = "step and step_kernel agree"
    spec = cell.eval().step_kernel()
    if spec is None:
        return
    kind, weights = spec
    if kind not in KINDS or len(weights) != 4:
        fail(prop, f"step_kernel returns kind {kind!r} with {len(weights)} weights; expected one of "
                   f"{', '.join(KINDS)} with (w_ih, w_hh, b_ih, b_hh)")
    rows = GATES[kind] * cell.hidden_size
    for name, w, shape in zip(("w_ih", "w_hh", "b_ih", "b_hh"), weights,
                              ((rows, cell.input_size), (rows, cell.hidden_size), (rows,), (rows,))):
        if (w is not None or name.startswith("w")) and tuple(getattr(w, "shape", ())) != shape:
            fail(prop, f"step_kernel's {name} has shape {tuple(getattr(w, 'shape', ()))}, a {kind} of this "
                       f"cell's sizes {shape}")
    op = getattr(torch, f"{kind}_cell")
    with torch.no_grad():
        h, new = cell.step(x, state)
        if kind == "lstm":
            want_h, want_c = op(x, state, *weights)
            close(prop, "state[1]", new[1], want_c)
        else:
            want_h = op(x, state[0], *weights)
    close(prop, "the output", h, want_h)
    cell.train()


def _check_carry(cell, x, state, t) -> None:
    """State handed from one window to the next gives what one long window gives."""
    prop = "state carried across windows"
    cell.eval()
    out, final = cell(x, state, t)
    cut = STEPS // 2
    first, mid = cell(x[:, :cut], state, None if t is None else t[:, :cut])
    second, end = cell(x[:, cut:], mid, None if t is None else t[:, cut:])
    close(prop, "the first window's output", first, out[:, :cut])
    close(prop, "the second window's output", second, out[:, cut:])
    for i, (a, b) in enumerate(zip(end, final)):
        close(prop, f"state[{i}]", a, b)
    cell.train()


def _check_inspect(cell, x, state, t) -> None:
    """``inspect`` computes what ``forward`` and the step loop compute, and its traces are what
    inspection expects: the state by ``state_names``, (batch, steps, hidden) each, gates in [0, 1]."""
    import torch

    prop = "inspection"
    cell.eval()
    with torch.no_grad():
        out, final, traces = cell.inspect(x, state, t)
        want_out, want_final = cell(x, state, t)
        close(prop, "the output", out, want_out)
        for i, (a, b) in enumerate(zip(final, want_final)):
            close(prop, f"state[{i}]", a, b)
        states, s = [], state
        for i in range(x.shape[1]):
            s = cell.step(x[:, i], s, None if t is None else t[:, i])[1]
            states.append(s)
        for i, name in enumerate(cell.state_names[:cell.state_count]):
            if name not in traces:
                fail(prop, f"inspect returns no trace {name!r} (state_names {cell.state_names!r})")
            close(prop, f"the trace {name!r}", traces[name], torch.stack([s[i] for s in states], dim=1))
        for name, values in traces.items():
            if tuple(values.shape) != (BATCH, STEPS, HIDDEN):
                fail(prop, f"the trace {name!r} has shape {tuple(values.shape)}, not {(BATCH, STEPS, HIDDEN)}")
            if name.startswith("gate.") and not bool(((values >= 0) & (values <= 1)).all()):
                fail(prop, f"the gate trace {name!r} leaves [0, 1]")
        clock = cell.clock()
        for name, values in (clock or {}).items():
            if tuple(values.shape) != (HIDDEN,):
                fail(prop, f"clock()[{name!r}] has shape {tuple(values.shape)}, not ({HIDDEN},)")
    cell.train()


def _check_seed(build, x, state, t) -> None:
    """The same seed builds the same weights, and the same training-mode output."""
    import torch

    prop = "deterministic under a seed"
    outs = []
    for _ in range(2):
        cell = build(INPUT)
        torch.manual_seed(SEED)
        outs.append((cell.state_dict(), cell.train()(x, state, t)[0]))
    (w1, o1), (w2, o2) = outs
    for name in w1:
        if not torch.equal(w1[name], w2[name]):
            fail(prop, f"two builds under seed {SEED} differ in {name}")
    if not torch.equal(o1, o2):
        fail(prop, f"two training-mode runs under seed {SEED} differ by up to {float((o1 - o2).abs().max()):.3g}")


def _check_time(cell, x, state, t) -> None:
    """A cell with ``uses_time`` reads its timestamps: other times give another output."""
    import torch

    out, _ = cell(x, state, t)
    other, _ = cell(x, state, t * 2 + 3)
    if torch.allclose(out, other, rtol=0, atol=1e-12):
        fail("timestamps honoured", "the output does not change when the timestamps do (uses_time is set)")


def _check_sampling(run_dir: Path, managers: Callable, kernel: bool) -> None:
    """The run's checkpoint loads and generates; with a step kernel the fast loop serves it and gives
    the text the step-by-step path gives."""
    import copy

    from charforge.plugins import Registry
    from charforge.runs.checkpoint import build_from, load_checkpoint
    from charforge.sampling.engine import BatchGenerator
    from charforge.sampling.fastpath import FastWeights
    from charforge.sampling.settings import Request, Settings

    prop = "sampling"
    ckpt = load_checkpoint(run_dir, which="latest", model_only=True)
    model = build_from(ckpt, Registry(managers()))

    def text(m, precision="float32", settings=Settings(40, greedy=True)) -> list[str]:
        engine = BatchGenerator(m, ckpt.vocab, "cpu", precision=precision, threads=1)
        return [s.text for s in engine.run([Request("Ka", settings, 2)], seed=SEED)]

    samples = text(model, "auto", Settings(40))
    if [len(s) for s in samples] != [40, 40]:
        fail(prop, f"two samples of 40 characters came out {[len(s) for s in samples]} long")
    if not kernel:
        return
    prop = "step_kernel serves generation"
    if FastWeights.of(model, "float32") is None:
        fail(prop, "the cell declares a step_kernel, yet the fast generation loop declines the model")
    generic = copy.deepcopy(model)
    generic.__class__ = type("StepByStep", (_StepByStep, type(model)), {})
    fast, slow = text(model), text(generic)
    if fast != slow:
        at = next(i for i, (a, b) in enumerate(zip(fast[0] + fast[1], slow[0] + slow[1])) if a != b)
        fail(prop, f"the fast loop's greedy text departs from the step-by-step text at character {at}")
