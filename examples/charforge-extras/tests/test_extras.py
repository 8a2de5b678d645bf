"""The Signum optimizer and the parity task: charforge's plugin kit, and each rule checked by hand."""

from __future__ import annotations

import pytest
import torch

from charforge.plugin import IGNORE, CharforgeError
from charforge.testing import check_optimizer
from charforge_extras.parity import Parity
from charforge_extras.signum import SPEC, Signum


def test_signum_keeps_charforge_s_optimizer_contract():
    check_optimizer(SPEC)


def test_plain_sign_descent_keeps_the_contract_too():
    check_optimizer(SPEC, momentum=0.0)


def test_a_step_moves_each_weight_by_lr_against_its_averaged_gradient():
    p = torch.nn.Parameter(torch.tensor([1.0, 1.0, 1.0]))
    opt = Signum(iter([p]), lr=0.1, momentum=0.5)
    p.grad = torch.tensor([3.0, -0.01, 0.0])
    opt.step()  # average: 0.5 * g
    assert p.tolist() == pytest.approx([0.9, 1.1, 1.0])
    p.grad = torch.tensor([-1.0, 1.0, 0.0])
    opt.step()  # average: 0.5 * (0.5 * g1) + 0.5 * g2 = [0.25, 0.4975, 0]
    assert p.tolist() == pytest.approx([0.8, 1.0, 1.0])


def test_a_momentum_of_one_is_refused():
    with pytest.raises(ValueError, match="momentum must be in"):
        SPEC.build(iter([torch.nn.Parameter(torch.zeros(1))]), lr=0.1, momentum=1.0)


def test_parity_scores_only_the_last_bit_and_repeats_each_batch():
    data = Parity(length=5, samples=64, test_samples=32).data(16, 0, seed=3, device=torch.device("cpu"))
    assert data.vocab.decode([0, 1]) == "01"
    bits, targets, times = data.train.window(2)
    assert bits.shape == targets.shape == (16, 5) and times is None
    assert (targets[:, :-1] == IGNORE).all()
    assert targets[:, -1].tolist() == (bits.sum(dim=1) % 2).tolist()
    assert torch.equal(data.train.window(2)[0], bits)
    assert not torch.equal(data.val.window(2)[0], bits)  # the held-out strings are another stream


def test_a_parity_string_of_no_bits_is_one_line():
    with pytest.raises(CharforgeError, match="option 'length' must be from 1"):
        Parity(length=0, samples=10, test_samples=10)
