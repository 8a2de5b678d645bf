"""The built-in cells: the fused sequence path and the one-step path compute the same function,
and the initialisation choices do what they say."""

from __future__ import annotations

import math

import pytest
import torch

from charforge.cell import Cell
from charforge.model import CharModel

CASES = [
    pytest.param("rnn", {"nonlinearity": "tanh"}, id="rnn-tanh"),
    pytest.param("rnn", {"nonlinearity": "relu"}, id="rnn-relu"),
    pytest.param("rnn", {"nonlinearity": "tanh", "bias": False}, id="rnn-tanh-nobias"),
    pytest.param("rnn", {"nonlinearity": "relu", "bias": False, "init": "identity"}, id="rnn-irnn-nobias"),
    pytest.param("lstm", {}, id="lstm"),
    pytest.param("gru", {}, id="gru"),
]


def make_cell(registry, name, options, input_size=5, hidden_size=8, dtype=torch.float64) -> Cell:
    torch.manual_seed(0)
    cell = registry.get("cell", name).obj(input_size, hidden_size, **options)
    return cell.to(dtype)


def random_state(cell: Cell, batch: int, dtype) -> tuple[torch.Tensor, ...]:
    """A non-zero state to carry in (zeros would hide a path that ignores the state)."""
    return tuple(0.5 * torch.randn(batch, cell.hidden_size, dtype=dtype, requires_grad=True)
                 for _ in range(cell.state_count))


def run_and_differentiate(cell: Cell, path, x, state, probe_out, probe_state):
    """Outputs, final state and the gradients of a scalar of both w.r.t. params, input and state."""
    cell.zero_grad(set_to_none=True)
    out, final = path(x, state)
    loss = (out * probe_out).sum() + sum((s * p).sum() for s, p in zip(final, probe_state))
    inputs = [x, *state, *cell.parameters()]
    grads = torch.autograd.grad(loss, inputs)
    return out.detach(), tuple(s.detach() for s in final), grads


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)], ids=["f64", "f32"])
@pytest.mark.parametrize("name, options", CASES)
def test_sequence_and_step_paths_agree(registry, name, options, dtype, tol):
    cell = make_cell(registry, name, options, dtype=dtype)
    assert type(cell).forward is not Cell.forward, "the built-in cells use a fused sequence kernel"
    batch, steps = 3, 7
    torch.manual_seed(1)
    x = torch.randn(batch, steps, cell.input_size, dtype=dtype, requires_grad=True)
    state = random_state(cell, batch, dtype)
    probe_out = torch.randn(batch, steps, cell.hidden_size, dtype=dtype)
    probe_state = [torch.randn(batch, cell.hidden_size, dtype=dtype) for _ in state]

    fused = run_and_differentiate(cell, cell.forward, x, state, probe_out, probe_state)
    # Cell.forward is the generic loop over ``step``: the path sampling uses, one step at a time.
    stepped = run_and_differentiate(cell, lambda x_, s_: Cell.forward(cell, x_, s_), x, state,
                                    probe_out, probe_state)

    out_f, state_f, grads_f = fused
    out_s, state_s, grads_s = stepped
    assert out_f.shape == (batch, steps, cell.hidden_size)
    assert len(state_f) == len(state_s) == cell.state_count
    torch.testing.assert_close(out_f, out_s, atol=tol, rtol=tol)
    for a, b in zip(state_f, state_s):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)
    names = ["input"] + [f"state[{i}]" for i in range(len(state))] + [n for n, _ in cell.named_parameters()]
    for what, a, b in zip(names, grads_f, grads_s):
        assert a.abs().sum() > 0, f"gradient of {what} is zero: the test would prove nothing"
        torch.testing.assert_close(a, b, atol=tol, rtol=tol, msg=lambda m: f"d/d{what}: {m}")
    # The last output of an RNN/GRU is its state; the LSTM's is its h (state[0]).
    torch.testing.assert_close(out_f[:, -1], state_f[0])


@pytest.mark.parametrize("name, options", CASES)
def test_state_is_carried_across_calls(registry, name, options):
    """Running 10 steps at once equals 4 then 6 with the state handed over (truncated BPTT relies on it)."""
    cell = make_cell(registry, name, options)
    x = torch.randn(2, 10, cell.input_size, dtype=torch.float64)
    state = tuple(s.detach() for s in random_state(cell, 2, torch.float64))
    whole, final = cell(x, state)
    first, mid = cell(x[:, :4], state)
    second, final2 = cell(x[:, 4:], mid)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole)
    for a, b in zip(final, final2):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("embedding_dim", [0, 6], ids=["one-hot", "embedding"])
@pytest.mark.parametrize("cell_name", ["rnn", "lstm", "gru"])
def test_model_forward_equals_model_steps(registry, cell_name, embedding_dim):
    """The whole CharModel (2 layers): the training path and the sampling path give the same logits."""
    torch.manual_seed(0)
    cls = registry.get("cell", cell_name).obj
    model = CharModel(11, cls, 9, num_layers=2, dropout=0.3, embedding_dim=embedding_dim).double().eval()
    tokens = torch.randint(0, 11, (3, 6))
    state = model.initial_state(3)
    logits, final = model(tokens, state)
    stepped, s = [], state
    for i in range(tokens.shape[1]):
        out, s = model.step(tokens[:, i], s)
        stepped.append(out)
    torch.testing.assert_close(torch.stack(stepped, dim=1), logits, atol=1e-10, rtol=1e-10)
    for layer_a, layer_b in zip(final, s):
        for a, b in zip(layer_a, layer_b):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


# -- initialisation ------------------------------------------------------------------------------

def rnn_weights(registry, hidden=256, input_size=64, **options):
    torch.manual_seed(0)
    cell = registry.get("cell", "rnn").obj(input_size, hidden, **options)
    return cell.rnn


def test_orthogonal_init_gives_an_orthogonal_recurrent_matrix(registry):
    rnn = rnn_weights(registry, init="orthogonal")
    w = rnn.weight_hh_l0.detach().double()
    torch.testing.assert_close(w @ w.T, torch.eye(w.shape[0], dtype=torch.float64), atol=1e-5, rtol=0)
    assert rnn.bias_ih_l0.abs().max() == 0 and rnn.bias_hh_l0.abs().max() == 0


def test_identity_init_is_the_irnn(registry):
    rnn = rnn_weights(registry, nonlinearity="relu", init="identity")
    assert torch.equal(rnn.weight_hh_l0, torch.eye(256))
    assert rnn.weight_ih_l0.std() < 0.01  # small input weights (Le et al. 2015 use N(0, 0.001))
    assert rnn.bias_ih_l0.abs().max() == 0 and rnn.bias_hh_l0.abs().max() == 0


def test_he_init_has_the_he_standard_deviation(registry):
    rnn = rnn_weights(registry, init="he")
    for w, fan_in in ((rnn.weight_hh_l0.detach(), 256), (rnn.weight_ih_l0.detach(), 64)):
        expected = math.sqrt(2.0 / fan_in)
        assert abs(float(w.std()) / expected - 1) < 0.05, (float(w.std()), expected)
        assert abs(float(w.mean())) < 0.1 * expected


def test_default_init_is_pytorchs_uniform(registry):
    rnn = rnn_weights(registry)
    bound = 1 / math.sqrt(256)
    w = rnn.weight_hh_l0.detach()
    assert w.abs().max() <= bound
    assert abs(float(w.std()) - bound / math.sqrt(3)) < 0.05 * bound  # uniform(-b, b) has std b/sqrt(3)


def test_rnn_bias_switch(registry):
    assert rnn_weights(registry, bias=False).bias is False
    assert not any("bias" in n for n, _ in rnn_weights(registry, bias=False).named_parameters())
    model = CharModel(7, registry.get("cell", "rnn").obj, 8, output_bias=False,
                      cell_options={"bias": False})
    assert [n for n, _ in model.named_parameters()] == [
        "layers.0.rnn.weight_ih_l0", "layers.0.rnn.weight_hh_l0", "head.weight"]


@pytest.mark.parametrize("forget_bias", [None, 2.5])
def test_lstm_forget_gate_bias(registry, forget_bias):
    """PyTorch adds two biases per gate (gates ordered i, f, g, o): the forget gate's sum to 1."""
    cls = registry.get("cell", "lstm").obj
    hidden = 16
    cell = cls(4, hidden) if forget_bias is None else cls(4, hidden, forget_bias=forget_bias)
    total = (cell.rnn.bias_ih_l0 + cell.rnn.bias_hh_l0).detach()
    expected = 1.0 if forget_bias is None else forget_bias
    torch.testing.assert_close(total[hidden:2 * hidden], torch.full((hidden,), expected))
    others = torch.cat([total[:hidden], total[2 * hidden:]])
    assert others.abs().max() < 2 / math.sqrt(hidden) and others.std() > 0  # the others keep PyTorch's init
    assert cls.options["forget_bias"].default == 1.0
