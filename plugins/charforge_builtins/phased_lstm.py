"""The Phased LSTM (Neil, Pfeiffer & Liu, NIPS 2016): an LSTM whose updates a periodic time gate opens.

Each unit has a period ``tau``, a phase shift ``s`` and an open ratio ``r_on``. At time ``t`` its
phase is ``phi = ((t - s) mod tau) / tau`` (a floor modulo, so ``phi`` lies in [0, 1) also for
negative ``t - s``) and its time gate ``k`` rises linearly from 0 to 1 over the first half of the
open window, falls back to 0 over the second half, and leaks ``alpha * phi`` while closed
(``alpha`` = 1e-3 in training, 0 in evaluation and sampling)::

    c~_t, h~_t = an ordinary LSTM step from (x_t, h_{t-1}, c_{t-1})   (the gates never see k)
    c_t = k_t * c~_t + (1 - k_t) * c_{t-1}
    h_t = k_t * h~_t + (1 - k_t) * h_{t-1}

The phase is computed in float64 (timestamps arrive as float64; float32's spacing at 10^7 is 1,
wider than an open window), then the gate in the weights' dtype.

Speed: :meth:`PhasedLSTMCell.forward` computes ``k`` for every step in one vectorised op and the
input projection ``x W_ih`` for every step in one matrix multiply, then runs the recurrence in a
custom autograd function whose forward and backward loops (TorchScript-compiled when TorchScript
works, plain Python otherwise) do one matrix multiply and a few elementwise ops per step, with no
autograd graph per step. :meth:`PhasedLSTMCell.step` is the plain autograd form of one step, used
for sampling; tests hold the two paths to the same outputs and gradients.

Parameters are laid out with the gates in the order (o, i, f, g) along the 4 * hidden rows.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from charforge.cell import GATE_BIAS_LIMIT, Cell, State, check_range
from charforge.errors import CharforgeError
from charforge.hookspecs import hookimpl
from charforge.options import Option

EPS = 1e-6  # smallest period and open ratio: keeps the gate finite whatever the optimizer does
# The widest initial log-period: exp(50) time units outlasts any stream and is finite in float32.
TAU_LOG_LIMIT = 50.0

# Which recurrence forward() runs: "auto" (TorchScript when it compiles, else Python), "script",
# "python" (the same hand-written loops, uncompiled) or "autograd" (the step loop, for reference).
# The environment variable CHARFORGE_PHASED_LSTM_IMPL sets it too.
IMPLEMENTATIONS = ("auto", "script", "python", "autograd")


# -- the recurrence: hand-written forward and backward loops -------------------------------------
# Written in the subset of Python that TorchScript compiles. Time-major: xw (T, B, 4H), k (T, B, H).
# Gate order along the 4H axis: o, i, f, g (three sigmoids first, then the tanh).


def _forward_loop(xw: Tensor, k: Tensor, w_hh_t: Tensor, h0: Tensor, c0: Tensor,
                  w_co: Optional[Tensor], w_if: Optional[Tensor]
                  ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Returns hs, cs (T+1, B, H) (row 0: h0, c0), acts (T, B, 4H) = (o, i, f, g) after their
    nonlinearities, cts (T, B, H) = c~ and tcs (T, B, H) = tanh(c~). k may be (T, 1, H)."""
    steps = xw.size(0)
    hidden = h0.size(1)
    h3 = 3 * hidden
    hs = xw.new_empty((steps + 1, h0.size(0), hidden))
    cs = torch.empty_like(hs)
    acts = torch.empty_like(xw)
    cts = xw.new_empty((steps, h0.size(0), hidden))
    tcs = torch.empty_like(cts)
    hs[0] = h0
    cs[0] = c0
    h, c = h0, c0
    for t in range(steps):
        pre = torch.addmm(xw[t], h, w_hh_t)
        a = acts[t]
        if w_if is not None:
            pre[:, hidden:h3].view(-1, 2, hidden).addcmul_(c.unsqueeze(1), w_if)
        # tanh(x) = 2 sigmoid(2x) - 1: PyTorch's CPU sigmoid is several times faster than its tanh.
        pre[:, h3:].mul_(2.0)
        torch.sigmoid(pre, out=a)
        g = a[:, h3:].mul_(2.0).sub_(1.0)
        ct = torch.addcmul(a[:, 2 * hidden:h3] * c, a[:, hidden:2 * hidden], g, out=cts[t])
        if w_co is not None:
            torch.sigmoid(torch.addcmul(pre[:, :hidden], ct, w_co), out=a[:, :hidden])
        tc = torch.sigmoid(ct * 2.0, out=tcs[t]).mul_(2.0).sub_(1.0)
        kt = k[t]
        c = torch.lerp(c, ct, kt, out=cs[t + 1])
        h = torch.lerp(h, a[:, :hidden] * tc, kt, out=hs[t + 1])
    return hs, cs, acts, cts, tcs


def _backward_loop(grad_hs: Tensor, grad_c: Tensor, k: Tensor, w_hh: Tensor, cs: Tensor,
                   acts: Tensor, tcs: Tensor, w_co: Optional[Tensor], w_if: Optional[Tensor]
                   ) -> Tuple[Tensor, Tensor, Tensor]:
    """Backpropagates through the loop above. grad_hs (T+1, B, H) holds the gradients of hs,
    grad_c (B, H) that of the final c.

    Returns dgates (T, B, 4H), the gradients of the gate pre-activations, and dH, dC (T+1, B, H),
    the total gradients of h_t and c_t for t = 0..T (row 0: those of h0 and c0); the caller
    turns them into the time gate's and the weights' gradients, vectorised."""
    steps = k.size(0)
    hidden = acts.size(2) // 4
    h2 = 2 * hidden
    h3 = 3 * hidden
    dgates = torch.empty_like(acts)
    dH = torch.empty_like(cs)
    dC = torch.empty_like(cs)
    dh = grad_hs[steps]
    dc = grad_c
    for t in range(steps - 1, -1, -1):
        dH[t + 1] = dh
        dC[t + 1] = dc
        a = acts[t]
        sig = a[:, :h3]
        dsig = sig - sig * sig  # s (1 - s) of o, i, f
        o = a[:, :hidden]
        g = a[:, h3:]
        tc = tcs[t]
        kt = k[t]
        dg = dgates[t]
        dht = dh * kt  # the gradient of h~
        torch.mul(dht * tc, dsig[:, :hidden], out=dg[:, :hidden])
        dct = torch.addcmul(dc * kt, dht, o * (1 - tc * tc))  # the gradient of c~
        if w_co is not None:
            dct = torch.addcmul(dct, dg[:, :hidden], w_co)
        torch.mul(dct * g, dsig[:, hidden:h2], out=dg[:, hidden:h2])
        torch.mul(dct * cs[t], dsig[:, h2:h3], out=dg[:, h2:h3])
        torch.mul(dct * a[:, hidden:h2], 1 - g * g, out=dg[:, h3:])
        dc = torch.addcmul(dc - dc * kt, dct, a[:, h2:h3])
        if w_if is not None:
            dc = dc + (dg[:, hidden:h3].view(-1, 2, hidden) * w_if).sum(1)
        dh = torch.addmm(torch.addcmul(grad_hs[t], dh, 1 - kt), dg, w_hh)
    dH[0] = dh
    dC[0] = dc
    return dgates, dH, dC


_LOOPS: dict[str, tuple] = {"python": (_forward_loop, _backward_loop)}


def _scripted_loops() -> tuple | None:
    """The loops compiled by TorchScript, or None where it is unavailable (its deprecation is muted)."""
    if "script" not in _LOOPS:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _LOOPS["script"] = (torch.jit.script(_forward_loop), torch.jit.script(_backward_loop))
        except Exception:  # no source, no TorchScript in this build: the Python loops do the same
            _LOOPS["script"] = None
    return _LOOPS["script"]


def _loops(impl: str) -> tuple:
    if impl in ("auto", "script"):
        scripted = _scripted_loops()
        if scripted is not None:
            return scripted
        if impl == "script":
            raise CharforgeError("phased-lstm: TorchScript is not available here; set "
                                 "CHARFORGE_PHASED_LSTM_IMPL=python (or auto).")
    return _LOOPS["python"]


class _PhasedRecurrence(torch.autograd.Function):
    """The recurrence over all steps, given xw = x W_ih + b and the time gate k for every step."""

    @staticmethod
    def forward(ctx, xw, k, w_hh, h0, c0, w_co, w_if, impl):
        forward_loop, backward_loop = _loops(impl)
        hs, cs, acts, cts, tcs = forward_loop(xw, k, w_hh.t(), h0, c0, w_co, w_if)
        ctx.backward_loop = backward_loop
        ctx.save_for_backward(k, w_hh, hs, cs, acts, cts, tcs, w_co, w_if)
        return hs, cs[-1].clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_hs, grad_c):
        k, w_hh, hs, cs, acts, cts, tcs, w_co, w_if = ctx.saved_tensors
        hidden = k.size(2)
        grad_hs = torch.zeros_like(hs) if grad_hs is None else grad_hs.contiguous()
        grad_c = torch.zeros_like(cs[-1]) if grad_c is None else grad_c.contiguous()
        dgates, dH, dC = ctx.backward_loop(grad_hs, grad_c, k, w_hh, cs, acts, tcs, w_co, w_if)
        o = acts[:, :, :hidden]
        # h_t = lerp(h_{t-1}, o tanh(c~), k), c_t = lerp(c_{t-1}, c~, k): the time gate's gradient.
        dk = None
        if ctx.needs_input_grad[1]:
            dk = dH[1:] * (o * tcs - hs[:-1]) + dC[1:] * (cts - cs[:-1])
            if k.size(1) == 1 and dk.size(1) != 1:  # one gate row shared by the whole batch
                dk = dk.sum(1, keepdim=True)
        d_w_hh = (dgates.reshape(-1, 4 * hidden).t().mm(hs[:-1].reshape(-1, hidden))
                  if ctx.needs_input_grad[2] else None)
        d_w_co = d_w_if = None
        if w_co is not None and ctx.needs_input_grad[5]:
            d_w_co = (dgates[:, :, :hidden] * cts).sum((0, 1))
        if w_if is not None and ctx.needs_input_grad[6]:
            d_w_if = (dgates[:, :, hidden:3 * hidden].reshape(-1, 2, hidden)
                      * cs[:-1].reshape(-1, 1, hidden)).sum(0)
        return dgates, dk, d_w_hh, dH[0], dC[0], d_w_co, d_w_if, None


def _implementation() -> str:
    impl = os.environ.get("CHARFORGE_PHASED_LSTM_IMPL", "auto")
    if impl not in IMPLEMENTATIONS:
        raise CharforgeError(f"CHARFORGE_PHASED_LSTM_IMPL must be one of {', '.join(IMPLEMENTATIONS)}, "
                             f"not {impl!r}.")
    return impl


class PhasedLSTMCell(Cell):
    name = "phased-lstm"
    help = ("Phased LSTM (Neil et al. 2016): an LSTM whose state updates a learned periodic time gate "
            "opens; uses the timestamps (for text, the character's index in its stream).")
    options = {
        "tau_log_min": Option(1.0, "periods start as exp(U(tau_log_min, tau_log_max)) time units: "
                                   "(1, 3) as in the paper's frequency task; exp(U(1, 6)) suits "
                                   "longer sequences"),
        "tau_log_max": Option(3.0, "upper end of the initial log-period range"),
        "r_on": Option(0.05, "initial open ratio: the fraction of each period the gate is open"),
        "alpha": Option(1e-3, "leak of the closed gate in training (0 in evaluation and sampling)"),
        "learn_tau": Option(True, "learn the periods (false: keep them at their initial values)"),
        "learn_shift": Option(True, "learn the phase shifts s"),
        "learn_r_on": Option(True, "learn the open ratios"),
        "peepholes": Option(False, "diagonal peephole connections from the cell to the gates"),
        "forget_bias": Option(1.0, "initial forget-gate bias"),
    }
    state_count = 2
    state_names = ("h", "c")
    uses_time = True

    def __init__(self, input_size: int, hidden_size: int, tau_log_min: float = 1.0, tau_log_max: float = 3.0,
                 r_on: float = 0.05, alpha: float = 1e-3, learn_tau: bool = True, learn_shift: bool = True,
                 learn_r_on: bool = True, peepholes: bool = False, forget_bias: float = 1.0):
        super().__init__(input_size, hidden_size)
        for name, value in (("tau_log_min", tau_log_min), ("tau_log_max", tau_log_max)):
            check_range(self.name, name, value, -TAU_LOG_LIMIT, TAU_LOG_LIMIT)
        check_range(self.name, "forget_bias", forget_bias, -GATE_BIAS_LIMIT, GATE_BIAS_LIMIT)
        if not tau_log_min <= tau_log_max:
            raise CharforgeError(f"phased-lstm: tau_log_min ({tau_log_min}) must not exceed "
                                 f"tau_log_max ({tau_log_max}).")
        if not 0 < r_on <= 1:
            raise CharforgeError(f"phased-lstm: r_on must be in (0, 1], not {r_on}.")
        if not 0 <= alpha < 1:
            raise CharforgeError(f"phased-lstm: alpha must be in [0, 1), not {alpha}.")
        H = hidden_size
        self.alpha = alpha
        self.weight_ih = nn.Parameter(torch.empty(4 * H, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * H, H))
        self.bias = nn.Parameter(torch.zeros(4 * H))
        self.tau = nn.Parameter(torch.empty(H), requires_grad=learn_tau)
        self.shift = nn.Parameter(torch.empty(H), requires_grad=learn_shift)
        self.r_on = nn.Parameter(torch.full((H,), float(r_on)), requires_grad=learn_r_on)
        if peepholes:  # w_co (H,) to the output gate from c~; w_if (2, H) to the input and forget gates
            self.w_co = nn.Parameter(torch.zeros(H))
            self.w_if = nn.Parameter(torch.zeros(2, H))
        else:
            self.w_co = self.w_if = None
        bound = 1 / math.sqrt(H)
        with torch.no_grad():
            self.weight_ih.uniform_(-bound, bound)
            self.weight_hh.uniform_(-bound, bound)
            self.bias[2 * H:3 * H].fill_(forget_bias)
            if not self.tau.is_meta:  # built for its shapes alone (checkpoint.check_fits): nothing to compute
                self.tau.copy_(torch.empty(H).uniform_(tau_log_min, tau_log_max).exp())
                self.shift.copy_(torch.rand(H) * self.tau)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, alpha={self.alpha}, "
                f"peepholes={self.w_co is not None}")

    # -- the time gate --------------------------------------------------------------------------

    def time_gate(self, t: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """k for timestamps ``t`` of any shape: shape ``t.shape + (hidden,)``, in ``dtype``
        (the weights' by default). The phase is computed in float64."""
        dtype = dtype or self.weight_hh.dtype
        tau = self.tau.abs().clamp_min(EPS).double()
        phi = torch.remainder(t.double().unsqueeze(-1) - self.shift.double(), tau) / tau
        phi = phi.to(dtype)
        r_on = self.r_on.abs().clamp(EPS, 1.0).to(dtype)
        rise = phi * (2 / r_on)
        closed = phi * self.alpha if self.training and self.alpha else torch.zeros_like(phi)
        return torch.where(phi < r_on, torch.minimum(rise, 2 - rise), closed)

    def _need_time(self, t: Tensor | None) -> Tensor:
        if t is None:
            raise CharforgeError("phased-lstm needs a timestamp for every step (its cell has uses_time).")
        return t

    # -- one step (sampling) and a whole sequence (training) -------------------------------------

    def step(self, x: Tensor, state: State, t: Tensor | None = None) -> tuple[Tensor, State]:
        h, c = state
        H = self.hidden_size
        k = self.time_gate(self._need_time(t), x.dtype)
        pre = torch.addmm(self.bias, x, self.weight_ih.t()) + h.mm(self.weight_hh.t())
        o_pre, i_pre, f_pre, g_pre = pre.split(H, 1)
        if self.w_if is not None:
            i_pre = i_pre + self.w_if[0] * c
            f_pre = f_pre + self.w_if[1] * c
        ct = f_pre.sigmoid() * c + i_pre.sigmoid() * g_pre.tanh()
        if self.w_co is not None:
            o_pre = o_pre + self.w_co * ct
        h_new = torch.lerp(h, o_pre.sigmoid() * ct.tanh(), k)
        c_new = torch.lerp(c, ct, k)
        return h_new, (h_new, c_new)

    def forward(self, x: Tensor, state: State, t: Tensor | None = None) -> tuple[Tensor, State]:
        t = self._need_time(t)
        impl = _implementation()
        if x.shape[1] == 0:
            return x.new_zeros(x.shape[0], 0, self.hidden_size), state
        if impl == "autograd":
            return super().forward(x, state, t)
        h0, c0 = state
        if t.shape[0] > 1 and bool((t == t[:1]).all()):  # the same clock for every sample (text)
            t = t[:1]
        k = self.time_gate(t.t(), x.dtype)  # (T, B, H), or (T, 1, H) for a shared clock
        xw = torch.addmm(self.bias, x.transpose(0, 1).reshape(-1, x.shape[2]), self.weight_ih.t())
        xw = xw.view(x.shape[1], x.shape[0], -1)
        hs, c_last = _PhasedRecurrence.apply(xw, k, self.weight_hh, h0, c0, self.w_co, self.w_if, impl)
        return hs[1:].transpose(0, 1), (hs[-1], c_last)

    # -- inspection -----------------------------------------------------------------------------

    def inspect(self, x: Tensor, state: State, t: Tensor | None = None
                ) -> tuple[Tensor, State, dict[str, Tensor]]:
        """:meth:`Cell.inspect` through :meth:`forward`'s loop, which keeps every step's gates."""
        t = self._need_time(t)
        if x.shape[1] == 0:
            empty = x.new_zeros(x.shape[0], 0, self.hidden_size)
            return empty, state, {name: empty for name in ("h", "c", "gate.i", "gate.f", "gate.o", "time.k")}
        impl = _implementation()
        forward_loop = _loops("python" if impl == "autograd" else impl)[0]
        h0, c0 = state
        k = self.time_gate(t.t(), x.dtype)  # (T, B, H)
        xw = torch.addmm(self.bias, x.transpose(0, 1).reshape(-1, x.shape[2]), self.weight_ih.t())
        hs, cs, acts, _, _ = forward_loop(xw.view(x.shape[1], x.shape[0], -1), k, self.weight_hh.t(), h0, c0,
                                          self.w_co, self.w_if)
        H = self.hidden_size
        o, i, f = (acts[:, :, j * H:(j + 1) * H].transpose(0, 1) for j in range(3))  # gates o, i, f, g
        out = hs[1:].transpose(0, 1)
        traces = {"h": out, "c": cs[1:].transpose(0, 1), "gate.i": i, "gate.f": f, "gate.o": o,
                  "time.k": k.transpose(0, 1)}
        return out, (hs[-1], cs[-1]), traces

    def clock(self) -> dict[str, Tensor]:
        """:meth:`Cell.clock`: each unit's period, open ratio and phase shift, as the time gate uses them."""
        return {"period": self.tau.detach().abs().clamp_min(EPS),
                "open_ratio": self.r_on.detach().abs().clamp(EPS, 1.0), "shift": self.shift.detach()}


@hookimpl
def register_cells(register):
    register(PhasedLSTMCell)


def active_implementation() -> str:
    """Which recurrence forward() runs here: 'script', 'python' or 'autograd'."""
    impl = _implementation()
    if impl == "autograd":
        return impl
    return "script" if _loops(impl) is _LOOPS.get("script") else "python"
