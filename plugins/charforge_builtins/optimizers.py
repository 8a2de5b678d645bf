"""The classic optimizers the seed reports compare: SGD, momentum, Nesterov, Adagrad, RMSprop, Adam, AdamW."""

from __future__ import annotations

import torch

from charforge.hookspecs import hookimpl
from charforge.optim import OptimizerSpec
from charforge.options import Option

_WD = Option(0.0, "L2 weight decay")
_EPS = Option(1e-8, "term added to denominators for numerical stability")


def _fused_ok(params) -> bool:
    """PyTorch's fused (single-kernel) optimizer steps run on CPU and CUDA float tensors."""
    return all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)


def _sgd(params, lr, momentum=0.0, nesterov=False, dampening=0.0, weight_decay=0.0):
    params = list(params)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, dampening=dampening,
                           weight_decay=weight_decay, fused=_fused_ok(params))


def _adam(cls, params, lr, beta1, beta2, eps, weight_decay, amsgrad):
    params = list(params)
    return cls(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay,
               amsgrad=amsgrad, fused=_fused_ok(params))


def _adam_options(weight_decay: float) -> dict[str, Option]:
    return {
        "beta1": Option(0.9, "decay rate of the first-moment (mean) estimate"),
        "beta2": Option(0.999, "decay rate of the second-moment (uncentred variance) estimate"),
        "eps": _EPS,
        "weight_decay": Option(weight_decay, "weight decay" + (" (decoupled)" if weight_decay else "")),
        "amsgrad": Option(False, "use the AMSGrad variant"),
    }


SPECS = [
    OptimizerSpec("sgd", _sgd, {"weight_decay": _WD}, "Plain stochastic gradient descent."),
    OptimizerSpec(
        "momentum",
        lambda params, lr, **o: _sgd(params, lr, **o),
        {"momentum": Option(0.9, "momentum coefficient"),
         "dampening": Option(0.0, "dampening of the momentum"), "weight_decay": _WD},
        "SGD with heavy-ball momentum.",
    ),
    OptimizerSpec(
        "nesterov",
        lambda params, lr, **o: _sgd(params, lr, nesterov=True, **o),
        {"momentum": Option(0.9, "momentum coefficient"), "weight_decay": _WD},
        "SGD with Nesterov momentum.",
    ),
    OptimizerSpec(
        "adagrad",
        lambda params, lr, **o: torch.optim.Adagrad(params, lr=lr, **o),
        {"lr_decay": Option(0.0, "learning-rate decay per step"), "eps": Option(1e-10, _EPS.help),
         "initial_accumulator_value": Option(0.0, "starting value of the squared-gradient sums"),
         "weight_decay": _WD},
        "Adagrad: per-parameter rates from accumulated squared gradients.",
    ),
    OptimizerSpec(
        "rmsprop",
        lambda params, lr, **o: torch.optim.RMSprop(params, lr=lr, **o),
        {"alpha": Option(0.99, "decay rate of the squared-gradient average"), "eps": _EPS,
         "momentum": Option(0.0, "momentum coefficient"),
         "centered": Option(False, "normalise by the gradient's estimated variance"),
         "weight_decay": _WD},
        "RMSprop: rates from a moving average of squared gradients.",
    ),
    OptimizerSpec("adam", lambda params, lr, **o: _adam(torch.optim.Adam, params, lr, **o),
                  _adam_options(0.0), "Adam (Kingma & Ba 2015)."),
    OptimizerSpec("adamw", lambda params, lr, **o: _adam(torch.optim.AdamW, params, lr, **o),
                  _adam_options(0.01), "Adam with decoupled weight decay (Loshchilov & Hutter 2019)."),
]


@hookimpl
def register_optimizers(register):
    for spec in SPECS:
        register(spec)
