"""Gradients of the vanilla RNN character model, checked three ways.

1. Finite differences (``torch.autograd.gradcheck`` in float64) against autograd on the real
   :class:`CharModel`, for the hidden bias b_h, the output bias b_y, the weights and the initial
   state, with the biases switched on and off.
2. The seed report's hand-derived backpropagation through time for a tanh RNN with softmax
   cross-entropy, L = sum_t -log softmax(o_t)[y_t]:

       dL/do_t  = softmax(o_t) - onehot(y_t)
       dL/db_y  = sum_t dL/do_t
       delta_t  = (1 - h_t^2) * (W_hy^T dL/do_t + W_hh^T delta_{t+1}),   delta_{T+1} = 0
       dL/db_h  = sum_t delta_t

   written out in plain tensor arithmetic and compared with autograd on the real model.
   ``nn.RNN`` keeps two hidden biases, b_ih and b_hh, which enter as a sum: each receives dL/db_h.
3. The hand-written gradients against central finite differences of a hand-written forward pass.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck
from torch.func import functional_call

from charforge.model import CharModel

VOCAB, HIDDEN, BATCH, STEPS = 6, 5, 2, 7
B_IH, B_HH, B_Y = "layers.0.rnn.bias_ih_l0", "layers.0.rnn.bias_hh_l0", "head.bias"
W_IH, W_HH, W_HY = "layers.0.rnn.weight_ih_l0", "layers.0.rnn.weight_hh_l0", "head.weight"


def rnn_model(registry, bias=True, output_bias=True, nonlinearity="tanh", seed=0) -> CharModel:
    torch.manual_seed(seed)
    cell = registry.get("cell", "rnn").obj
    model = CharModel(VOCAB, cell, HIDDEN, output_bias=output_bias,
                      cell_options={"bias": bias, "nonlinearity": nonlinearity})
    with torch.no_grad():  # biases of a visible size, so that their paths matter
        for name, p in model.named_parameters():
            if "bias" in name:
                p.uniform_(-0.5, 0.5)
    return model.double()


def data(seed=1):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, VOCAB, (BATCH, STEPS), generator=g)
    targets = torch.randint(0, VOCAB, (BATCH, STEPS), generator=g)
    h0 = 0.5 * torch.randn(BATCH, HIDDEN, generator=g, dtype=torch.float64)  # a carried-in state
    return tokens, targets, h0


def model_loss(model, params: dict, tokens, targets, h0, reduction="sum"):
    logits, _ = functional_call(model, params, (tokens, [(h0,)]))
    return F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1), reduction=reduction)


def assert_depends_on(fn, inputs):
    """Every input really reaches the loss (a gradient check of a constant would prove nothing)."""
    for grad in torch.autograd.grad(fn(*inputs), inputs):
        assert grad.abs().max() > 0


BIAS_CASES = [
    pytest.param(True, True, id="b_h+b_y"),
    pytest.param(False, True, id="b_y-only"),
    pytest.param(True, False, id="b_h-only"),
]


@pytest.mark.parametrize("bias, output_bias", BIAS_CASES)
def test_gradcheck_biases(registry, bias, output_bias):
    model = rnn_model(registry, bias, output_bias)
    tokens, targets, h0 = data()
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    names = [n for n in (B_IH, B_HH, B_Y) if n in params]
    assert len(names) == 2 * bias + output_bias

    def loss(*biases):
        return model_loss(model, {**params, **dict(zip(names, biases))}, tokens, targets, h0)

    inputs = tuple(params[n].clone().requires_grad_() for n in names)
    assert_depends_on(loss, inputs)
    assert gradcheck(loss, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_gradcheck_weights_and_initial_state(registry):
    model = rnn_model(registry)
    tokens, targets, _ = data()
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    names = [W_IH, W_HH, W_HY]

    def loss(w_ih, w_hh, w_hy, h0):
        return model_loss(model, {**params, W_IH: w_ih, W_HH: w_hh, W_HY: w_hy}, tokens, targets, h0,
                          reduction="mean")

    h0 = data()[2].requires_grad_()
    inputs = tuple(params[n].clone().requires_grad_() for n in names) + (h0,)
    assert_depends_on(loss, inputs)
    assert gradcheck(loss, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


# -- the seed report's BPTT, by hand ----------------------------------------------------------------

def manual_forward(p: dict, tokens, h0):
    """h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), o_t = W_hy h_t + b_y, x_t one-hot."""
    zero_h = torch.zeros(HIDDEN, dtype=torch.float64)
    b_h = p.get(B_IH, zero_h) + p.get(B_HH, zero_h)
    b_y = p.get(B_Y, torch.zeros(VOCAB, dtype=torch.float64))
    xs = F.one_hot(tokens, VOCAB).double()
    hs, outs, h = [h0], [], h0
    for t in range(tokens.shape[1]):
        h = torch.tanh(xs[:, t] @ p[W_IH].T + h @ p[W_HH].T + b_h)
        hs.append(h)
        outs.append(h @ p[W_HY].T + b_y)
    return xs, hs, torch.stack(outs, dim=1)


def manual_loss(p, tokens, targets, h0) -> float:
    _, _, o = manual_forward(p, tokens, h0)
    log_probs = o - torch.logsumexp(o, dim=-1, keepdim=True)
    return float(-log_probs.gather(-1, targets.unsqueeze(-1)).sum())


def manual_bptt(p: dict, tokens, targets, h0) -> dict:
    """dL/db_h, dL/db_y (and the weights' and h0's gradients) by the seed report's recursion."""
    xs, hs, o = manual_forward(p, tokens, h0)
    d_o = torch.softmax(o, dim=-1) - F.one_hot(targets, VOCAB).double()  # dL/do_t, (B, T, V)
    grads = {"b_h": torch.zeros(HIDDEN, dtype=torch.float64), "b_y": d_o.sum(dim=(0, 1)),
             "W_ih": torch.zeros_like(p[W_IH]), "W_hh": torch.zeros_like(p[W_HH]),
             "W_hy": torch.zeros_like(p[W_HY])}
    delta_next = torch.zeros(BATCH, HIDDEN, dtype=torch.float64)
    for t in reversed(range(tokens.shape[1])):
        h_t, h_prev = hs[t + 1], hs[t]
        # row vectors: W^T v is v @ W
        delta = (1 - h_t ** 2) * (d_o[:, t] @ p[W_HY] + delta_next @ p[W_HH])
        grads["b_h"] += delta.sum(0)
        grads["W_ih"] += delta.T @ xs[:, t]
        grads["W_hh"] += delta.T @ h_prev
        grads["W_hy"] += d_o[:, t].T @ h_t
        delta_next = delta
    grads["h0"] = delta_next @ p[W_HH]
    return grads


@pytest.mark.parametrize("bias, output_bias", BIAS_CASES)
def test_hand_written_bptt_matches_autograd_on_the_real_model(registry, bias, output_bias):
    model = rnn_model(registry, bias, output_bias)
    tokens, targets, h0 = data()
    p = {n: t.detach() for n, t in model.named_parameters()}
    expected = manual_bptt(p, tokens, targets, h0)

    h0 = h0.clone().requires_grad_()
    logits, _ = model(tokens, [(h0,)])
    _, _, manual_logits = manual_forward(p, tokens, h0.detach())
    torch.testing.assert_close(logits.detach(), manual_logits, rtol=1e-12, atol=1e-12)
    F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1), reduction="sum").backward()
    got = dict(model.named_parameters())

    tight = dict(rtol=1e-10, atol=1e-12)
    if bias:  # nn.RNN's two hidden biases are summed, so each one's gradient is dL/db_h
        torch.testing.assert_close(got[B_IH].grad, expected["b_h"], **tight)
        torch.testing.assert_close(got[B_HH].grad, expected["b_h"], **tight)
    else:
        assert B_IH not in got and B_HH not in got
    if output_bias:
        torch.testing.assert_close(got[B_Y].grad, expected["b_y"], **tight)
    else:
        assert B_Y not in got
    for key, name in (("W_ih", W_IH), ("W_hh", W_HH), ("W_hy", W_HY)):
        torch.testing.assert_close(got[name].grad, expected[key], **tight)
    torch.testing.assert_close(h0.grad, expected["h0"], **tight)


def test_hand_written_bias_gradients_match_finite_differences(registry):
    """No autograd at all: the seed report's formulas against central differences of the loss."""
    model = rnn_model(registry)
    tokens, targets, h0 = data()
    p = {n: t.detach().clone() for n, t in model.named_parameters()}
    grads = manual_bptt(p, tokens, targets, h0)
    eps = 1e-6
    for name, key, size in ((B_IH, "b_h", HIDDEN), (B_Y, "b_y", VOCAB)):
        numeric = torch.zeros(size, dtype=torch.float64)
        for i in range(size):
            plus, minus = dict(p), dict(p)
            plus[name] = p[name].clone()
            plus[name][i] += eps
            minus[name] = p[name].clone()
            minus[name][i] -= eps
            numeric[i] = (manual_loss(plus, tokens, targets, h0) - manual_loss(minus, tokens, targets, h0)) / (2 * eps)
        torch.testing.assert_close(grads[key], numeric, rtol=1e-6, atol=1e-8)


def test_output_bias_gradient_is_the_sum_of_softmax_minus_onehot(registry):
    """With reduction='mean' (what the trainer uses) dL/db_y is that sum over B*T positions."""
    model = rnn_model(registry)
    tokens, targets, h0 = data()
    logits, _ = model(tokens, [(h0,)])
    F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1)).backward()
    expected = (logits.detach().softmax(-1) - F.one_hot(targets, VOCAB)).sum(dim=(0, 1)) / (BATCH * STEPS)
    torch.testing.assert_close(model.head.bias.grad, expected, rtol=1e-10, atol=1e-12)
    assert abs(float(model.head.bias.grad.sum())) < 1e-12  # softmax sums to 1, like the one-hot
