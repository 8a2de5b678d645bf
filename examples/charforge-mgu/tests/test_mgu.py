"""The MGU plugin: charforge's plugin kit, and the paper's equations worked by hand for one step."""

from __future__ import annotations

import math

import pytest
import torch

from charforge.plugin import CharforgeError
from charforge.testing import check_cell
from charforge_mgu import MGU


def test_the_cell_keeps_charforge_s_cell_contract():
    check_cell(MGU)


def test_the_contract_holds_with_a_closed_forget_gate():
    check_cell(MGU, forget_bias=-3.0)


def test_one_step_is_the_paper_s_equations():
    """One unit, one input, every weight set by hand: h_t follows from the three equations."""
    cell = MGU(1, 1)
    w_f, w_h, b_f, b_h, u_f, u_h = 0.5, -1.5, 0.25, 0.1, 2.0, -0.75
    with torch.no_grad():
        cell.input.weight.copy_(torch.tensor([[w_f], [w_h]]))
        cell.input.bias.copy_(torch.tensor([b_f, b_h]))
        cell.forget.weight.fill_(u_f)
        cell.candidate.weight.fill_(u_h)
    x, h0 = 0.8, -0.4
    f = 1 / (1 + math.exp(-(w_f * x + u_f * h0 + b_f)))
    candidate = math.tanh(w_h * x + u_h * (f * h0) + b_h)
    expected = (1 - f) * h0 + f * candidate

    h, (state,) = cell.step(torch.tensor([[x]]), (torch.tensor([[h0]]),))
    assert h.item() == pytest.approx(expected, rel=1e-6)
    assert state.item() == h.item()


def test_forget_bias_sets_b_f_only():
    cell = MGU(3, 4, forget_bias=2.5)
    assert cell.input.bias[:4].tolist() == [2.5] * 4
    assert cell.input.bias[4:].abs().max() < 2.5  # b_h keeps torch's default uniform start


def test_an_absurd_forget_bias_is_one_line():
    with pytest.raises(CharforgeError, match="forget_bias must be in"):
        MGU(3, 4, forget_bias=1e40)
