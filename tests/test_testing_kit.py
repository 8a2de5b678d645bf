"""The plugin author's test kit: the built-in cells and optimizers pass it, broken ones are caught by
name, and its fixtures work as a pytest plugin."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from _cells import TinyCell
from charforge.cell import Cell
from charforge.options import Option
from charforge.plugins import Registry
from charforge.testing import ContractError, check_cell, check_optimizer
from charforge_builtins.gru import GRUCell
from charforge_builtins.lstm import LSTMCell
from charforge_builtins.optimizers import SPECS
from charforge_builtins.phased_lstm import PhasedLSTMCell
from charforge_builtins.rnn import RNNCell


@pytest.mark.parametrize("cell, options", [
    pytest.param(RNNCell, {}, id="rnn"),
    pytest.param(RNNCell, {"nonlinearity": "relu", "bias": False, "init": "identity"}, id="rnn-irnn"),
    pytest.param(LSTMCell, {"forget_bias": 2.0}, id="lstm"),
    pytest.param(GRUCell, {}, id="gru"),
    pytest.param(PhasedLSTMCell, {}, id="phased-lstm"),
    pytest.param(PhasedLSTMCell, {"peepholes": True, "learn_tau": False}, id="phased-lstm-peepholes"),
])
def test_the_builtin_cells_pass_the_kit(cell, options):
    check_cell(cell, **options)


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_the_builtin_optimizers_pass_the_kit(spec):
    check_optimizer(spec)


def test_optimizer_options_are_checked_too():
    adam = next(s for s in SPECS if s.name == "adam")
    check_optimizer(adam, beta1="0.8", amsgrad=True)


def test_a_third_party_cell_of_the_step_contract_alone_passes():
    check_cell(TinyCell, gain="0.5")


class OwnGRU(Cell):
    """A third-party GRU: not a built-in's subclass, yet its step is ``torch.gru_cell``, so it opts in
    to the fast generation loop through ``step_kernel`` alone."""

    name = "kit-own-gru"

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        self.w_ih = nn.Parameter(0.3 * torch.randn(3 * hidden_size, input_size))
        self.w_hh = nn.Parameter(0.3 * torch.randn(3 * hidden_size, hidden_size))
        self.b_ih = nn.Parameter(torch.zeros(3 * hidden_size))

    def step(self, x, state, t=None):
        h = torch.gru_cell(x, state[0], self.w_ih, self.w_hh, self.b_ih, None)
        return h, (h,)

    def step_kernel(self):
        return "gru", (self.w_ih, self.w_hh, self.b_ih, None)


def test_a_third_party_cell_opts_in_to_the_fast_generation_loop(monkeypatch):
    from charforge.sampling.fastpath import FastWeights

    plans = []
    real = FastWeights.of.__func__
    monkeypatch.setattr(FastWeights, "of", classmethod(lambda cls, *a: plans.append(real(cls, *a)) or plans[-1]))
    check_cell(OwnGRU)
    assert any(plan is not None and plan.kind == 1 for plan in plans)  # the gru kind code
    assert TinyCell(2, 3).step_kernel() is None and TinyCell(2, 3).stack_key(torch.zeros(1, 1, 2)) is None


class DisagreeingCell(TinyCell):
    """Its fused forward is not its step: a bias creeps in."""

    name = "kit-disagreeing"

    def forward(self, x, state, t=None):
        out, final = super().forward(x, state, t)
        return out + 1e-3, final


class WrongStateCell(TinyCell):
    """Declares two state tensors, returns one."""

    name = "kit-wrong-state"
    state_count = 2

    def step(self, x, state, t=None):
        h = torch.tanh(self.linear(torch.cat([x, state[0]], dim=-1)))
        return h, (h,)


class BadKernelCell(RNNCell):
    """Claims the relu kernel for its tanh step."""

    name = "kit-bad-kernel"

    def step_kernel(self):
        return "rnn_relu", self._weights()


class BadStackCell(LSTMCell):
    """Its multi-layer call drifts from its layers run one after another."""

    name = "kit-bad-stack"

    @staticmethod
    def forward_stack(layers, x, states, dropout, training):
        out, final = LSTMCell.forward_stack(layers, x, states, dropout, training)
        return out * 1.01, final


class SeedlessCell(TinyCell):
    """Counts its builds into its weights: state of its own, which no seed resets."""

    name = "kit-seedless"
    builds = 0

    def __init__(self, input_size, hidden_size, gain=1.0):
        super().__init__(input_size, hidden_size, gain)
        SeedlessCell.builds += 1
        with torch.no_grad():
            self.linear.weight.add_(1e-3 * SeedlessCell.builds)


class ClocklessCell(TinyCell):
    """Says it uses the timestamps, and ignores them."""

    name = "kit-clockless"
    uses_time = True


class WindowCell(TinyCell):
    """Forgets the state it is handed in windows shorter than the checks' long one."""

    name = "kit-window"

    def forward(self, x, state, t=None):
        return super().forward(x, tuple(s * 0 for s in state) if x.shape[1] < 6 else state, t)


class UngatedCell(TinyCell):
    """Reports a gate that is not a gate's value."""

    name = "kit-ungated"

    def inspect(self, x, state, t=None):
        out, final, traces = super().inspect(x, state, t)
        return out, final, {**traces, "gate.u": traces["h"] * 2}


class ForgetfulInspectCell(TinyCell):
    """Its inspection starts from zeros, not from the state it is handed."""

    name = "kit-forgetful-inspect"

    def inspect(self, x, state, t=None):
        return super().inspect(x, tuple(torch.zeros_like(s) for s in state), t)


@pytest.mark.parametrize("cell, prop, numbers", [
    pytest.param(DisagreeingCell, "step and forward agree", "differs by up to 0.001", id="forward"),
    pytest.param(WrongStateCell, "shapes", "state_count = 2", id="state-shape"),
    pytest.param(BadStackCell, "step and forward_stack agree", "the output differs by up to", id="stack"),
    pytest.param(BadKernelCell, "step and step_kernel agree", "differs by up to", id="step-kernel"),
    pytest.param(SeedlessCell, "deterministic under a seed", "differ in linear.weight", id="seed"),
    pytest.param(ClocklessCell, "timestamps honoured", "does not change", id="time"),
    pytest.param(WindowCell, "state carried across windows", "differs by up to", id="carry"),
    pytest.param(UngatedCell, "inspection", "'gate.u' leaves [0, 1]", id="gate-range"),
    pytest.param(ForgetfulInspectCell, "inspection", "the output differs by up to", id="inspect-state"),
])
def test_a_broken_cell_fails_naming_the_property(cell, prop, numbers):
    with pytest.raises(ContractError) as info:
        check_cell(cell)
    assert info.value.property == prop
    assert str(info.value).startswith(f"{prop}: ") and numbers in str(info.value)


def test_an_option_the_constructor_does_not_take_fails_naming_the_options():
    class Undeclared(TinyCell):
        name = "kit-undeclared"
        options = {**TinyCell.options, "depth": Option(2, "not a constructor argument")}

    with pytest.raises(ContractError, match="^options round-trip: the constructor"):
        check_cell(Undeclared)


def test_an_optimizer_that_spends_its_iterator_fails():
    from charforge.optim import OptimizerSpec

    def build(params, lr):
        if not any(True for _ in params):  # a check that spends the first parameter of the iterator
            raise ValueError("no parameters")
        return torch.optim.SGD(params, lr=lr)

    with pytest.raises(ContractError, match="^builds from an iterator of parameters: the optimizer holds 1 of the 2"):
        check_optimizer(OptimizerSpec("kit-spent", build))


class FixedRate(torch.optim.SGD):
    """SGD at a learning rate of its own, whatever its groups say."""

    def __init__(self, params):
        super().__init__(params, lr=0.05)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                p.add_(p.grad, alpha=-0.05)


def test_an_optimizer_that_ignores_its_learning_rate_fails():
    from charforge.optim import OptimizerSpec

    def build(params, lr):
        return FixedRate(params)

    with pytest.raises(ContractError, match="^honours the learning rate it is given: parameter 0 moved"):
        check_optimizer(OptimizerSpec("kit-fixed", build))


class TupleState(torch.optim.SGD):
    """Keeps a tuple in its state, which a checkpoint's JSON cannot hold."""

    def step(self, closure=None):
        super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["trace"] = (1, 2)


class Forgetful(torch.optim.SGD):
    """Decays its steps by a count kept outside its state, so a resume starts the count again."""

    calls = 0

    @torch.no_grad()
    def step(self, closure=None):
        self.calls += 1
        for group in self.param_groups:
            for p in group["params"]:
                p.add_(p.grad, alpha=-group["lr"] / self.calls)


@pytest.mark.parametrize("optimizer, prop, numbers", [
    pytest.param(TupleState, "state serialisable", "state 'trace' of parameter 0 is a tuple", id="state"),
    pytest.param(Forgetful, "resume from a checkpoint", "at step 4 the loss is", id="resume"),
])
def test_a_broken_optimizer_fails_naming_the_property(optimizer, prop, numbers):
    from charforge.optim import OptimizerSpec

    with pytest.raises(ContractError) as info:
        check_optimizer(OptimizerSpec(f"kit-{prop.split()[0]}", lambda params, lr: optimizer(params, lr=lr)))
    assert info.value.property == prop and numbers in str(info.value)


# -- the fixtures, through the pytest11 entry point -------------------------------------------------

def test_the_kit_is_loaded_as_a_pytest_plugin(pytestconfig):
    import charforge.testing

    assert pytestconfig.pluginmanager.get_plugin("charforge") is charforge.testing


def test_the_plugin_manager_fixture_adds_plugins_and_is_quiet(charforge_pm):
    from charforge.testing.common import provider

    registry = Registry(charforge_pm(extra=[provider("register_cells", TinyCell)]))
    assert registry.get("cell", "tiny").obj is TinyCell
    assert "lstm" in registry.names("cell")
    assert registry.pm.is_blocked("console")


def test_the_corpus_fixture_is_a_small_text(charforge_corpus):
    text = charforge_corpus.read_text(encoding="utf-8")
    assert 2000 < len(text) < 4000 and text.endswith("\n") and len(set(text)) > 15


def test_the_entry_points_fixture_adds_an_installed_plugin(charforge_entry_points, charforge_pm):
    charforge_entry_points("kitcell", "from charforge.plugin import Cell, hookimpl\n\n"
                           "class Echo(Cell):\n    name = 'kit-echo'\n\n"
                           "    def step(self, x, state, t=None):\n        return state[0], state\n\n"
                           "@hookimpl\ndef register_cells(register):\n    register(Echo)\n")
    registry = Registry(charforge_pm())
    assert registry.get("cell", "kit-echo").plugin == "kitcell"
