"""The Phased LSTM cell plugin and the frequency-discrimination task.

The cell's sequence path (a custom autograd function over hand-written loops, TorchScript or
plain Python) and its step path (ordinary autograd) must compute the same function; the time
gate must follow the paper, with a floor modulo and a float64 phase; gradients must be exact
(gradcheck); and the cell must train, resume and sample like every other cell.
"""

from __future__ import annotations

import math

import pytest
import torch
from click.testing import CliRunner

from charforge.cell import Cell
from charforge_builtins import phased_lstm as plstm
from charforge_builtins.phased_lstm import PhasedLSTMCell

IMPLS = ["script", "python"]


@pytest.fixture(autouse=True)
def _default_impl(monkeypatch):
    monkeypatch.delenv("CHARFORGE_PHASED_LSTM_IMPL", raising=False)


def make_cell(input_size=3, hidden_size=5, dtype=torch.float64, seed=0, **options) -> PhasedLSTMCell:
    torch.manual_seed(seed)
    cell = PhasedLSTMCell(input_size, hidden_size, **options).to(dtype)
    if cell.w_co is not None:  # peepholes start at 0: make them count
        with torch.no_grad():
            cell.w_co.normal_(0, 0.5)
            cell.w_if.normal_(0, 0.5)
    return cell


def clocks(batch, steps, shared=False, low=-30.0, high=30.0, dtype=torch.float64, seed=1):
    """Sorted timestamps; negative ones too, so that t - s < 0 is covered."""
    gen = torch.Generator().manual_seed(seed)
    t = (low + (high - low) * torch.rand(1 if shared else batch, steps, generator=gen, dtype=dtype)).sort(1).values
    return t.expand(batch, steps).contiguous()


# -- registration and the gate --------------------------------------------------------------------


def test_registered_like_any_cell(registry):
    item = registry.get("cell", "phased-lstm")
    assert item.obj is PhasedLSTMCell and item.plugin == "phased_lstm"
    assert PhasedLSTMCell.uses_time and PhasedLSTMCell.state_count == 2
    assert {"tau_log_min", "tau_log_max", "r_on", "alpha", "learn_tau", "learn_shift", "learn_r_on",
            "peepholes"} <= set(PhasedLSTMCell.options)
    assert "exp(U(1, 6))" in PhasedLSTMCell.options["tau_log_min"].help


def test_initialisation():
    cell = make_cell(hidden_size=2000, dtype=torch.float32)
    tau = cell.tau.detach()
    assert math.e ** 1 <= tau.min() and tau.max() <= math.e ** 3
    assert (cell.shift >= 0).all() and (cell.shift <= tau).all()
    assert torch.equal(cell.r_on.detach(), torch.full((2000,), 0.05))
    assert cell.w_co is None and cell.w_if is None
    wide = make_cell(hidden_size=500, tau_log_min=1.0, tau_log_max=6.0)
    assert wide.tau.max() > math.e ** 4


def test_time_gate_follows_the_paper():
    cell = make_cell(hidden_size=1)
    with torch.no_grad():
        cell.tau.fill_(10.0)
        cell.shift.fill_(3.0)
        cell.r_on.fill_(0.2)
    # phi = ((t - 3) mod 10) / 10, floor modulo: t = 3 - 9 = -6 gives phi = 0.1, not -0.9.
    t = torch.tensor([3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 12.0, -6.0, -6.5, -2.0, 1e7 + 3.5], dtype=torch.float64)
    phi = torch.tensor([0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.9, 0.1, 0.05, 0.5, 0.05], dtype=torch.float64)
    rising = phi < 0.1
    opened = torch.where(rising, 2 * phi / 0.2, 2 - 2 * phi / 0.2)
    cell.train()
    expected = torch.where(phi < 0.2, opened, 1e-3 * phi)
    assert torch.allclose(cell.time_gate(t).squeeze(-1), expected, atol=1e-12)
    cell.eval()  # no leak in evaluation and sampling
    expected = torch.where(phi < 0.2, opened, torch.zeros(()))
    assert torch.allclose(cell.time_gate(t).squeeze(-1), expected, atol=1e-12)


def test_phase_is_computed_in_float64_at_large_timestamps():
    """At t ~ 10^7 float32 cannot tell t from t + 0.5; the gate must (its open window is 0.5)."""
    cell = make_cell(hidden_size=4, dtype=torch.float32)
    with torch.no_grad():
        cell.tau.copy_(torch.tensor([8.0, 5.0, 10.0, 4.0]))
        cell.shift.zero_()
        cell.r_on.fill_(0.1)
    offsets = torch.arange(0, 16, 0.25, dtype=torch.float64)  # 10^7 is a multiple of every tau
    near, far = cell.time_gate(offsets), cell.time_gate(offsets + 1e7)
    assert torch.equal(near, far)
    assert near.max() == 1 and len(near.unique()) > 20
    rounded = cell.time_gate((offsets + 1e7).float().double())  # what a float32 clock would give
    assert not torch.equal(rounded, near)
    x = torch.randn(2, len(offsets), 3)
    state = cell.initial_state(2)
    out_near, _ = cell(x, state, offsets.expand(2, -1).contiguous())
    out_far, _ = cell(x, state, (offsets + 1e7).expand(2, -1).contiguous())
    assert torch.allclose(out_near, out_far, atol=1e-6)


def test_parameters_stay_valid():
    """A negative or zero period, or an open ratio outside (0, 1], gives finite numbers, not NaN."""
    cell = make_cell(dtype=torch.float32)
    with torch.no_grad():
        cell.tau.copy_(torch.tensor([-7.0, 0.0, 1e-9, 3.0, 5.0]))
        cell.r_on.copy_(torch.tensor([0.0, -0.3, 1.5, 1e-12, 0.05]))
    x = torch.randn(2, 6, 3)
    out, (h, c) = cell(x, cell.initial_state(2), clocks(2, 6, dtype=torch.float64))
    (out.sum() + c.sum()).backward()
    assert torch.isfinite(out).all() and torch.isfinite(c).all()
    assert all(torch.isfinite(p.grad).all() for p in cell.parameters())


def test_needs_timestamps():
    from charforge.errors import CharforgeError

    cell = make_cell()
    with pytest.raises(CharforgeError, match="timestamp"):
        cell(torch.randn(2, 3, 3, dtype=torch.float64), cell.initial_state(2, dtype=torch.float64))


def test_empty_sequence_keeps_the_state():
    cell = make_cell()
    state = tuple(torch.randn(2, 5, dtype=torch.float64) for _ in range(2))
    out, final = cell(torch.zeros(2, 0, 3, dtype=torch.float64), state, torch.zeros(2, 0, dtype=torch.float64))
    assert out.shape == (2, 0, 5) and final[0] is state[0] and final[1] is state[1]


def test_closed_gate_holds_the_state_in_evaluation():
    cell = make_cell(hidden_size=3).eval()
    with torch.no_grad():
        cell.tau.fill_(10.0)
        cell.shift.zero_()
        cell.r_on.fill_(0.1)
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    state = tuple(torch.randn(2, 3, dtype=torch.float64) for _ in range(2))
    t = torch.tensor([[2.0, 3.0, 5.5, 9.9]] * 2, dtype=torch.float64)  # phases 0.2..0.99: all closed
    out, (h, c) = cell(x, state, t)
    assert torch.equal(h, state[0]) and torch.equal(c, state[1])
    assert torch.equal(out, state[0].unsqueeze(1).expand(-1, 4, -1))


# -- exact gradients and two paths that agree --------------------------------------------------------


class _StepLoop(torch.nn.Module):
    """The generic ``Cell.forward``: a loop over ``step``, the path sampling takes."""

    def __init__(self, cell):
        super().__init__()
        self.cell = cell

    def forward(self, x, state, t):
        return Cell.forward(self.cell, x, state, t)


@pytest.mark.parametrize("path", ["forward", "step"])
@pytest.mark.parametrize("peepholes", [False, True], ids=["plain", "peepholes"])
def test_gradcheck(path, peepholes, monkeypatch):
    """Exact gradients w.r.t. x, h, c, tau, s and r_on (and the peepholes), t - s of both signs."""
    monkeypatch.setenv("CHARFORGE_PHASED_LSTM_IMPL", "script")
    cell = make_cell(hidden_size=3, r_on=0.5, peepholes=peepholes)  # wide open windows: every piece used
    cell.train()
    batch, steps = 2, 5
    names = ["tau", "shift", "r_on"] + (["w_co", "w_if"] if peepholes else [])
    module, prefix = (cell, "") if path == "forward" else (_StepLoop(cell), "cell.")
    t = clocks(batch, steps, low=-25.0, high=25.0)

    def f(x, h, c, *params):
        overrides = {prefix + n: p for n, p in zip(names, params)}
        out, (h2, c2) = torch.func.functional_call(module, overrides, (x, (h, c), t))
        return out, h2, c2

    torch.manual_seed(2)
    x = torch.randn(batch, steps, 3, dtype=torch.float64, requires_grad=True)
    h = (0.5 * torch.randn(batch, 3, dtype=torch.float64)).requires_grad_()
    c = (0.5 * torch.randn(batch, 3, dtype=torch.float64)).requires_grad_()
    params = [getattr(cell, n).detach().clone().requires_grad_() for n in names]
    phi = torch.remainder(t.unsqueeze(-1) - params[1], params[0]) / params[0]
    assert (t.unsqueeze(-1) < params[1]).any(), "some t - s must be negative"
    open_ = phi < params[2]
    assert open_.any() and (~open_).any() and (phi < params[2] / 2).any() and (open_ & (phi > params[2] / 2)).any()
    assert torch.autograd.gradcheck(f, (x, h, c, *params), eps=1e-6, atol=1e-6)


def _run(cell, path, x, state, t, probes):
    cell.zero_grad(set_to_none=True)
    out, final = cell(x, state, t) if path == "forward" else Cell.forward(cell, x, state, t)
    loss = (out * probes[0]).sum() + (final[0] * probes[1]).sum() + (final[1] * probes[2]).sum()
    wrt = [x, *state] + [p for p in cell.parameters() if p.requires_grad]
    return [out, *final, *torch.autograd.grad(loss, wrt)]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shared_clock", [False, True], ids=["per-sample-clock", "shared-clock"])
@pytest.mark.parametrize("peepholes", [False, True], ids=["plain", "peepholes"])
def test_sequence_and_step_paths_agree(impl, shared_clock, peepholes, monkeypatch):
    """float32, outputs and every gradient to 1e-5: what trains is what samples."""
    monkeypatch.setenv("CHARFORGE_PHASED_LSTM_IMPL", impl)
    cell = make_cell(input_size=4, hidden_size=6, dtype=torch.float32, r_on=0.3, peepholes=peepholes)
    batch, steps = 3, 9
    torch.manual_seed(3)
    x = torch.randn(batch, steps, 4, requires_grad=True)
    state = tuple((0.5 * torch.randn(batch, 6)).requires_grad_() for _ in range(2))
    t = clocks(batch, steps, shared_clock, low=1e6, high=1e6 + 40)
    probes = [torch.randn(batch, steps, 6), torch.randn(batch, 6), torch.randn(batch, 6)]
    for mode in ("train", "eval"):
        getattr(cell, mode)()
        fast = _run(cell, "forward", x, state, t, probes)
        slow = _run(cell, "step", x, state, t, probes)
        for a, b in zip(fast, slow):
            assert a.shape == b.shape
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), (mode, (a - b).abs().max())


def test_implementations_and_fallback(monkeypatch):
    from charforge.errors import CharforgeError

    assert plstm.active_implementation() in ("script", "python")
    monkeypatch.setenv("CHARFORGE_PHASED_LSTM_IMPL", "autograd")
    assert plstm.active_implementation() == "autograd"
    monkeypatch.setenv("CHARFORGE_PHASED_LSTM_IMPL", "fastest")
    with pytest.raises(CharforgeError, match="CHARFORGE_PHASED_LSTM_IMPL"):
        plstm.active_implementation()
    monkeypatch.setenv("CHARFORGE_PHASED_LSTM_IMPL", "auto")
    monkeypatch.setitem(plstm._LOOPS, "script", None)  # as if TorchScript could not compile here
    assert plstm.active_implementation() == "python"
    cell = make_cell()
    x, t = torch.randn(2, 4, 3, dtype=torch.float64), clocks(2, 4)
    out, _ = cell(x, cell.initial_state(2, dtype=torch.float64), t)
    ref, _ = Cell.forward(cell, x, cell.initial_state(2, dtype=torch.float64), t)
    assert torch.allclose(out, ref, atol=1e-12)


def test_frozen_parameters_do_not_move():
    cell = make_cell(dtype=torch.float32, learn_tau=False, learn_shift=False, learn_r_on=False)
    assert not (cell.tau.requires_grad or cell.shift.requires_grad or cell.r_on.requires_grad)
    before = [p.detach().clone() for p in (cell.tau, cell.shift, cell.r_on)]
    opt = torch.optim.Adam([p for p in cell.parameters() if p.requires_grad], lr=0.1)
    out, _ = cell(torch.randn(2, 5, 3), cell.initial_state(2), clocks(2, 5, dtype=torch.float64))
    out.sum().backward()
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, (cell.tau, cell.shift, cell.r_on)))
    learnt = make_cell(dtype=torch.float32)
    out, _ = learnt(torch.randn(2, 5, 3), learnt.initial_state(2), clocks(2, 5, dtype=torch.float64))
    out.sum().backward()
    assert learnt.tau.grad is not None and learnt.shift.grad.abs().sum() > 0


# -- char-level training, resume and sampling ---------------------------------------------------------


def test_char_training_resume_and_sample(text_corpus, runs_root):
    from charforge.cli import cli

    run = runs_root / "plstm"
    common = ["--cell", "phased-lstm", "--hidden-size", "16", "--layers", "2", "--batch-size", "4",
              "--seq-len", "16", "--threads", "1", "--device", "cpu", "--eval-every", "3", "--sample-length", "10",
              "-c", "tau_log_max", "4", "-q"]
    result = CliRunner().invoke(cli, ["train", str(text_corpus), *common, "--steps", "3", "--runs-dir",
                                      str(runs_root), "--name", "plstm"])
    assert result.exit_code == 0, result.output
    from charforge.runs.checkpoint import load_checkpoint

    first = load_checkpoint(run, "latest")
    assert first.meta["step"] == 3 and first.meta["config"]["cell_options"]["tau_log_max"] == 4.0
    result = CliRunner().invoke(cli, ["train", "--resume", str(run), "--steps", "6", "-q"])
    assert result.exit_code == 0, result.output
    second = load_checkpoint(run, "latest")
    assert second.meta["step"] == 6 and second.meta["window"] == 6  # the clock runs on across the resume
    moved = [k for k in first.group("model") if k.endswith((".tau", ".shift", ".r_on"))]
    assert len(moved) == 6 and any(not torch.equal(first.group("model")[k], second.group("model")[k]) for k in moved)
    result = CliRunner().invoke(cli, ["sample", str(run), "--length", "40", "--seed", "1", "--prime", "The "])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("The ") and len(result.output.rstrip("\n")) >= 40


# -- the frequency task --------------------------------------------------------------------------------


def test_waves_are_what_the_task_says():
    from charforge.tasks.frequency import make_waves

    w = make_waves(400, min_points=5, max_points=40, seed=3)
    assert int(w.labels.sum()) == 200
    pos, neg = w.periods[w.labels == 1], w.periods[w.labels == 0]
    assert ((pos >= 5) & (pos <= 6)).all() and ((neg < 5) | (neg > 6)).all()
    assert (neg >= 1).all() and (neg <= 100).all() and (neg < 5).sum() > 50 and (neg > 20).sum() > 50
    assert w.times.dtype == torch.float64 and w.values.shape == (400, 40, 1)
    lengths = w.lengths
    assert lengths.min() >= 5 and lengths.max() == 40
    assert torch.equal(w.mask, torch.arange(40) >= (40 - lengths).unsqueeze(1))  # left padding
    assert (w.times.diff(dim=1) >= 0).all() and (w.times >= 0).all() and (w.times <= 125).all()
    assert (w.values.squeeze(2)[~w.mask] == 0).all()


@pytest.mark.parametrize("name", ["phased-lstm", "lstm"])
def test_the_frequency_task_gives_each_cell_its_inputs_and_scores_the_last_sample(registry, name):
    """A timed cell reads the value with the timestamp as its clock, a time-blind one the value and
    t / 100; every wave of a batch has the batch's length; only the last sample is scored."""
    from charforge.tasks.frequency import TIME_SCALE, Frequency
    from charforge.tasks.task import IGNORE

    task = Frequency(samples=64, test_samples=32, min_points=5, max_points=30)
    data = task.data(8, 0, seed=4, device="cpu")
    uses_time = registry.get("cell", name).obj.uses_time
    lengths = set()
    for i in range(data.train.windows):
        x, y, t = data.train.window(i, uses_time)
        assert x.shape[:2] == y.shape == (8, x.shape[1]) and x.shape[2] == data.input_size(uses_time)
        assert x.shape[2] == (1 if uses_time else 2) and 5 <= x.shape[1] <= 30
        assert (y[:, :-1] == IGNORE).all() and set(y[:, -1].tolist()) == {0, 1}
        if uses_time:
            assert t.dtype == torch.float64 and (t.diff(dim=1) >= 0).all()
        else:
            assert t is None or torch.allclose(x[..., 1].double(), data.train.window(i, True)[2] / TIME_SCALE,
                                               atol=1e-6)
        lengths.add(x.shape[1])
    assert len(lengths) > 1  # each batch draws its own length
    assert torch.equal(data.train.window(3, uses_time)[0], data.train.window(3, uses_time)[0])


def test_a_frequency_run_trains_through_the_trainer_and_cannot_be_sampled(tmp_path):
    from charforge.cli import cli
    from charforge.data import run_config
    from charforge.plugins import Registry, make_plugin_manager
    from charforge.trainer import Trainer

    pm = make_plugin_manager(block=["console"])
    config = run_config({"corpus": "frequency", "cell": "phased-lstm", "steps": 20, "hidden_size": 8,
                         "task_options": {"samples": 64, "test_samples": 64, "max_points": 20}}, Registry(pm))
    trainer = Trainer(config, pm=pm, runs_root=tmp_path, name="f")
    metrics = trainer.run()
    assert 0 <= metrics["val_accuracy"] <= 1 and trainer.model.layers[0].input_size == 1
    result = CliRunner().invoke(cli, ["sample", str(tmp_path / "f")])
    assert result.exit_code == 1 and "learned the task 'frequency', whose inputs are not characters" in result.output
    resumed = Trainer.resume(tmp_path / "f", {"steps": 25}, pm=pm)
    resumed.run()
    assert resumed.step == 25


def test_frequency_task_command(tmp_path):
    """The tiny version of `charforge frequency-task`: both models train and are scored on held-out
    waves. (At full size, Phased LSTM wins clearly: see the README.)"""
    from charforge.cli import cli

    result = CliRunner().invoke(cli, ["frequency-task", "--steps", "60", "--samples", "256", "--test-samples",
                                      "200", "--max-points", "40", "--hidden-size", "16", "--threads", "1",
                                      "--seed", "1", "--json", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    import json

    report = json.loads(result.output.strip().splitlines()[-1])
    for name in ("phased-lstm", "lstm"):
        assert 0 <= report[name]["accuracy"] <= 1 and report[name]["seconds"] > 0
        assert (tmp_path / f"frequency-{name}" / "checkpoints" / "best.safetensors").is_file()
    assert report["settings"]["steps"] == 60
