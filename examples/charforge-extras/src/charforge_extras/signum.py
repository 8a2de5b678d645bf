"""Sign descent (Bernstein et al. 2018): every weight moves by exactly the learning rate, against the
sign of its gradient (signSGD, ``momentum 0``) or of a moving average of its gradients (Signum)."""

from __future__ import annotations

import torch

from charforge.plugin import OptimizerSpec, Option, hookimpl


class Signum(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float = 0.9):
        if not 0.0 <= momentum < 1.0:  # charforge reports a ValueError from here as one line
            raise ValueError(f"momentum must be in [0, 1), not {momentum}")
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            # charforge sets group["lr"] before every step, from --lr and the schedule
            lr, momentum = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                direction = p.grad
                if momentum:
                    # torch's own name for it: charforge checks the shape of state it knows on resume
                    buffer = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                    buffer.mul_(momentum).add_(p.grad, alpha=1 - momentum)
                    direction = buffer
                p.add_(direction.sign(), alpha=-lr)
        return loss


SPEC = OptimizerSpec(
    "signum",
    # params is an iterator of the model's parameters: torch.optim.Optimizer reads it once, into a list
    lambda params, lr, momentum: Signum(params, lr=lr, momentum=momentum),
    {"momentum": Option(0.9, "decay of the gradient average whose sign is followed; 0 is plain signSGD")},
    "Sign descent: steps of exactly --lr per weight (Signum, Bernstein et al. 2018). Use a small --lr.",
)


@hookimpl
def register_optimizers(register):
    register(SPEC)
