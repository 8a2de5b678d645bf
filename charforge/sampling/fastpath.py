"""The fast step path of generation: many steps of a stack of fused cells in one call.

Models whose every layer declares the same :meth:`charforge.cell.Cell.step_kernel` (the built-in
fused RNN, LSTM and GRU cells, and any plugin cell whose step is one of ``torch.*_cell``) generate
through one TorchScript loop (:func:`fast_rows`; plain Python when TorchScript is unavailable) on
the raw weights. The first layer's input projection is read from a table
holding ``x W_ih + b`` for every vocabulary entry, so a step costs one (rows, hidden) x
(hidden, gates) product per layer plus the read-out, and the gate arithmetic of
``torch.*_cell`` (:func:`stack_step`). Each row then picks its character with
:func:`charforge.sampling.picking.choose_rows`.

A step reads every recurrent weight once, so its speed is the weights' bytes; the products run in
one of four modes, chosen per batch by :meth:`FastWeights.weights`:

* ``BLAS`` (float32, below :data:`BIG_BATCH` rows): ``F.linear`` on the weights, what
  ``model.step`` computes, to the bit.
* ``PACKED`` (float32, from :data:`BIG_BATCH` rows up): oneDNN with the weights packed once
  for the batch: faster per product, rounded differently in the last bit.
* ``INT8`` (precision ``int8``): fbgemm's dynamically quantised linear (PyTorch's quantized
  engine, with AVX2 and AVX-512 kernels): each weight row 8-bit with its own scale, the input
  rounded to 7 bits over a range pinned to (-1, 1) by one extra row (every state these cells feed
  forward lies there, an rnn with relu's aside, which only widens the range), so a row's integer
  sums never depend on its batch. A quarter of float32's bytes.
* ``FP16`` (precision ``float16``): fbgemm's linear on 16-bit weights, float32 input and sums.
  Half of float32's bytes.

The read-out stays float32 in every mode. Precision ``auto`` (the default of ``generate``,
``sample``, the API and the sampling screen) times float32 and each lossy mode this build offers on
the model's own weights at first use (one row, and the batch's power of two from
:data:`BIG_BATCH` up) and takes the fastest (:mod:`charforge.sampling.precision`, which caches
the choice on disk); ``int8`` is a candidate only where every layer's state is bounded (not an rnn
with relu), the states whose quality cost ``benchmarks/precision.py`` measured. Training,
scoring and the samples written at validation compute in float32.
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from charforge.errors import CharforgeError
from charforge.model import CharModel
from charforge.sampling import precision as measured
from charforge.sampling.picking import choose_rows
from charforge.sampling.settings import PRECISIONS

KINDS = {"lstm": 0, "gru": 1, "rnn_tanh": 2, "rnn_relu": 3}  # the kind codes the loop dispatches on
BLAS, PACKED, INT8, FP16 = 0, 1, 2, 3  # product modes (literals inside the TorchScript functions)
BIG_BATCH = 32  # rows from which float32 products go through oneDNN's packed weights
LOSSY = {"float16": FP16, "int8": INT8}  # the precisions off the exact path, and their modes
_TABLE_LIMIT = 1 << 26  # table entries (vocabulary x gates) above which the fast path is not used

Scalars = List[Optional[Union[int, float, complex]]]  # the type of oneDNN's (unused) post-op scalars


# -- the loop ---------------------------------------------------------------------------------------

def product(x: Tensor, w: Tensor, b: Optional[Tensor],
            packed: Optional[torch.classes.quantized.LinearPackedParamsBase], mode: int,
            scalars: Scalars) -> Tensor:
    """``F.linear(x, w, b)`` in float32, with ``w`` (and ``packed``) as :meth:`FastWeights.weights`
    prepared it for ``mode``. In INT8 mode ``w`` is the row that pins the input's range to (-1, 1)
    and ``packed`` holds weights and bias; in FP16 mode ``packed`` does."""
    if mode == 0:  # BLAS
        return F.linear(x, w, b)
    if mode == 1:  # PACKED
        return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", scalars, "")
    assert packed is not None  # fbgemm's modes always come with their packed weights
    if mode == 2:  # INT8; reduce_range: AVX2's 8-bit pair sums saturate int16 with full-range input
        return torch.ops.quantized.linear_dynamic(torch.cat([x, w]), packed, True)[:-1]
    return torch.ops.quantized.linear_dynamic_fp16(x, packed)


def stack_step(kind: int, mode: int, token: Tensor, hs: List[Tensor], cs: List[Tensor], table: Tensor,
               w_ih: List[Tensor], w_hh: List[Tensor], b_ih: List[Optional[Tensor]], b_hh: List[Optional[Tensor]],
               p_ih: List[Optional[torch.classes.quantized.LinearPackedParamsBase]],
               p_hh: List[Optional[torch.classes.quantized.LinearPackedParamsBase]], scalars: Scalars) -> Tensor:
    """One step of a stack of fused cells; updates ``hs``/``cs`` in place and returns the top
    layer's output. In BLAS mode the gate arithmetic is ``torch.lstm_cell``/``gru_cell``/
    ``rnn_*_cell``'s, op for op, so the result is theirs to the bit. In the other modes an LSTM
    takes one sigmoid over all four gates, its weights prepared by :func:`_one_sigmoid` (PyTorch's
    tanh costs several sigmoids on the CPU: benchmarks/NOTES.md)."""
    x = table  # never read: layer 0's input projection is a row of the table
    for layer in range(len(hs)):
        if layer == 0:
            gi = table.index_select(0, token)
        else:
            gi = product(x, w_ih[layer], b_ih[layer], p_ih[layer], mode, scalars)
        gh = product(hs[layer], w_hh[layer], b_hh[layer], p_hh[layer], mode, scalars)
        if kind == 0 and mode != 0:  # the cell gate's rows come doubled: tanh(g) = 2 sigmoid(2g) - 1
            ig, fg, cg, og = gi.add_(gh).sigmoid_().chunk(4, 1)
            c = torch.addcmul(fg * cs[layer], ig, cg, value=2.0).sub_(ig)
            h = og * c.tanh()
            cs[layer] = c
        elif kind == 0:
            ig, fg, cg, og = gh.add_(gi).chunk(4, 1)
            ig, fg, cg, og = ig.sigmoid_(), fg.sigmoid_(), cg.tanh_(), og.sigmoid_()
            c = (fg * cs[layer]).add_(ig * cg)
            h = og * c.tanh()
            cs[layer] = c
        elif kind == 1:
            ir, iz, in_ = gi.chunk(3, 1)
            hr, hz, hn = gh.chunk(3, 1)
            r, z = hr.add_(ir).sigmoid_(), hz.add_(iz).sigmoid_()
            new = in_.add(hn.mul_(r)).tanh_()
            h = (hs[layer] - new).mul_(z).add_(new)
        elif kind == 2:
            h = gh.add_(gi).tanh_()
        else:
            h = gh.add_(gi).relu_()
        hs[layer] = h
        x = h
    return x


def fast_rows(kind: int, mode: int, head_mode: int, n: int, token: Tensor, hs: List[Tensor], cs: List[Tensor],
              table: Tensor, w_ih: List[Tensor], w_hh: List[Tensor], b_ih: List[Optional[Tensor]],
              b_hh: List[Optional[Tensor]], p_ih: List[Optional[torch.classes.quantized.LinearPackedParamsBase]],
              p_hh: List[Optional[torch.classes.quantized.LinearPackedParamsBase]], head_w: Tensor, head_b: Optional[Tensor], scalars: Scalars,
              noise: Tensor, temps: Optional[Tensor], kth: Optional[Tensor], top_p: Optional[Tensor],
              greedy: Optional[Tensor], all_greedy: bool, out: Tensor) -> Tuple[Tensor, List[Tensor], List[Tensor]]:
    """``n`` steps of every row, each row picking with its own settings and uniforms ``noise``
    (n, rows, 1); tokens go to ``out`` (n, rows)."""
    for i in range(n):
        x = stack_step(kind, mode, token, hs, cs, table, w_ih, w_hh, b_ih, b_hh, p_ih, p_hh, scalars)
        token = choose_rows(product(x, head_w, head_b, None, head_mode, scalars), noise[i], temps, kth, top_p,
                            greedy, all_greedy)
        out[i] = token
    return token, hs, cs


_compiled: dict = {}


def compiled_fast_rows():
    """:func:`fast_rows` compiled by TorchScript once per process; the Python function itself when
    that fails or when ``CHARFORGE_SAMPLER_JIT=0`` (the same results either way)."""
    if "fast_rows" not in _compiled:
        compiled = fast_rows
        if os.environ.get("CHARFORGE_SAMPLER_JIT", "1") != "0":
            try:
                with warnings.catch_warnings():  # TorchScript is deprecated, not gone; it still pays here
                    warnings.simplefilter("ignore")
                    compiled = torch.jit.script(fast_rows)
            except Exception:  # noqa: BLE001 - any failure to compile leaves the Python loop, same results
                compiled = fast_rows
        _compiled["fast_rows"] = compiled
    return _compiled["fast_rows"]


# -- precision and packed weights --------------------------------------------------------------------

def check_precision(precision: str) -> str:
    """``precision`` when it is one of :data:`PRECISIONS`; else a one-line error."""
    if precision not in PRECISIONS:
        raise CharforgeError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}.")
    return precision


def _prepare(w: Tensor, b: Tensor | None, mode: int, batch: int) -> tuple:
    """``(w, b, packed)`` as ``product`` takes them in ``mode``: ``w`` packed by oneDNN, or ``w``
    and ``b`` packed by fbgemm (16-bit, or 8-bit rows with their own scales, and the pin row)."""
    if mode == PACKED:
        return torch.ops.mkldnn._reorder_linear_weight(w, batch), b, None
    if mode == FP16:
        return w, None, torch.ops.quantized.linear_prepack_fp16(w, b)
    step = w.abs().amax(dim=1).clamp_min(torch.finfo(w.dtype).tiny) / 127
    with warnings.catch_warnings():  # quantized tensors are deprecated as a user type; fbgemm's packing takes them
        warnings.simplefilter("ignore")
        weights = torch._make_per_channel_quantized_tensor(torch.round(w / step[:, None]).to(torch.int8),
                                                            step.double(), torch.zeros(len(step), dtype=torch.int64), 0)
        packed = torch.ops.quantized.linear_prepack(weights, b)
    pin = w.new_zeros(1, w.shape[1])
    pin[0, 0], pin[0, -1] = 1.0, -1.0
    return pin, None, packed


_usable: dict = {}
_TOLERANCE = {PACKED: 1e-5, FP16: 0.01, INT8: 0.05}  # of the largest output; 8 bits keep ~2 digits


def packed_usable(mode: int, shape: tuple, bias: bool, batch: int) -> bool:
    """Whether this build computes ``F.linear`` in ``mode`` (oneDNN's packed product, or fbgemm's
    16-bit or 8-bit one), checked once per process and shape on random numbers in (-1, 1) against
    float32 BLAS: no oneDNN, no quantized engine (or one without the op) leaves the mode out."""
    key = (mode, shape, bias, batch)
    if key not in _usable:
        ok = mode != PACKED or torch.backends.mkldnn.is_available()
        if ok:
            try:
                g = torch.Generator().manual_seed(0)
                x, w = torch.rand(batch, shape[1], generator=g) * 2 - 1, torch.randn(shape, generator=g)
                b = torch.randn(shape[0], generator=g) if bias else None
                got = product(x, *_prepare(w, b, mode, batch), mode, [])
                want = F.linear(x, w, b)
                tol = _TOLERANCE[mode] * float(want.abs().max())
                ok = got.shape == want.shape and bool(torch.allclose(got, want, rtol=0, atol=tol))
            except Exception:  # noqa: BLE001 - no oneDNN or fbgemm, or an op that changed: BLAS is always there
                ok = False
        _usable[key] = ok
    return _usable[key]


class FastWeights:
    """The raw weights the fast loop needs, taken from a model whose layers all allow it."""

    def __init__(self, kind: int, table: Tensor, weights: list[tuple], head_w: Tensor, head_b: Tensor | None,
                 precision: str):
        self.kind, self.table, self.head_w, self.head_b = kind, table, head_w, head_b
        self.w_ih = [w[0] for w in weights]
        self.w_hh = [w[1] for w in weights]
        self.b_ih = [w[2] for w in weights]
        self.b_hh = [w[3] for w in weights]
        self.precision = precision  # float32, float16, int8, or auto (measured per batch size)
        self._forms: dict = {}  # fbgemm's forms by mode: they do not depend on the batch size
        self._prepared: tuple = (None, None)

    @classmethod
    def of(cls, model, precision: str = "float32") -> "FastWeights | None":
        """The plan for ``model`` as it is now, or None when the generic path (``model.step``) must run.

        ``precision`` float16 or int8 raises where it cannot serve the model."""
        check_precision(precision)
        if (not isinstance(model, CharModel) or type(model).step is not CharModel.step or model.uses_time
                or (model.training and model.drop.p > 0)):
            return cls._no_plan(precision)
        kinds, weights = set(), []
        for layer in model.layers:
            spec = layer.step_kernel()
            if spec is None or spec[0] not in KINDS:
                return cls._no_plan(precision)
            kinds.add(spec[0])
            weights.append(tuple(w.detach() if w is not None else None for w in spec[1]))
        w_ih, w_hh, b_ih, b_hh = weights[0]
        vocab = model.vocab_size
        # CPU only: a GPU step is launch-bound, and cuDNN's cell kernels want 1-D biases, so the
        # table-row trick does not carry over; the generic path serves it.
        if len(kinds) != 1 or vocab * w_ih.shape[0] > _TABLE_LIMIT or w_ih.device.type != "cpu":
            return cls._no_plan(precision)
        if precision in LOSSY and not packed_usable(LOSSY[precision], tuple(w_hh.shape), False, 1):
            raise CharforgeError(f"--precision {precision} needs PyTorch's quantized engine (fbgemm), which this "
                                 "build or CPU lacks; use --precision float32.")
        with torch.inference_mode():
            if model.embed is None:  # one-hot rows: each entry is exactly one weight plus its bias
                eye = torch.eye(vocab, dtype=w_ih.dtype, device=w_ih.device)
                table = F.linear(eye, w_ih, b_ih)
            else:  # row by row: the very (1, embedding) product a step of one sample computes
                emb = model.embed.weight.detach()
                table = torch.cat([F.linear(emb[i:i + 1], w_ih, b_ih) for i in range(vocab)])
        head = model.head
        return cls(KINDS[kinds.pop()], table, weights, head.weight.detach(),
                   None if head.bias is None else head.bias.detach(), precision)

    @staticmethod
    def _no_plan(precision: str) -> None:
        if precision in LOSSY:
            raise CharforgeError(f"--precision {precision} needs a model of built-in rnn, lstm or gru layers (or "
                                 "cells with a step_kernel) on the CPU; use --precision float32.")
        return None

    def weights(self, rows: int) -> tuple:
        """``(mode, head_mode, table, w_ih, w_hh, b_ih, b_hh, p_ih, p_hh, head_w)`` for a batch of
        ``rows``: the plan's own weights for BLAS; for the other modes an LSTM's in the one-sigmoid
        form, packed by fbgemm (once per plan) or by oneDNN (again only when the batch changes size)."""
        if self._prepared[0] == rows:
            return self._prepared[1]
        if self.precision == "auto":
            mode = self._measured_mode(rows)
        else:
            mode = LOSSY.get(self.precision, self._float32_mode(rows))
        head_mode, head_w = BLAS, self.head_w
        if mode != BLAS and rows >= BIG_BATCH and packed_usable(PACKED, tuple(head_w.shape), self.head_b is not None,
                                                                rows):
            with torch.inference_mode():
                head_mode, head_w = PACKED, _prepare(head_w, None, PACKED, rows)[0]
        prepared = (mode, head_mode, *self._gates(mode, rows), head_w)
        self._prepared = (rows, prepared)
        return prepared

    def _float32_mode(self, rows: int) -> int:
        big = rows >= BIG_BATCH and packed_usable(PACKED, tuple(self.w_hh[0].shape), self.b_hh[0] is not None, rows)
        return PACKED if big else BLAS

    def _measured_mode(self, rows: int) -> int:
        """Precision auto's mode: the fastest of float32 and the lossy modes it may take here, timed
        on these weights at one row (below :data:`BIG_BATCH`) or the power of two at or above ``rows``."""
        size = 1 if rows < BIG_BATCH else 1 << (rows - 1).bit_length()
        modes = {"float32": self._float32_mode(rows)}
        for name, mode in LOSSY.items():  # an unbounded state's quality cost is unmeasured: not int8
            if (mode != INT8 or self.kind != KINDS["rnn_relu"]) and packed_usable(mode, tuple(self.w_hh[0].shape),
                                                                                 False, 1):
                modes[name] = mode
        if len(modes) == 1:
            return modes["float32"]
        shapes = [tuple(w.shape) for w in self.w_hh + self.w_ih[1:]]
        key = measured.key(f"kind {self.kind}, weights {shapes}, rows {size}")
        with torch.inference_mode():
            choice = measured.fastest(key, {name: self._timer(mode, size) for name, mode in modes.items()})
        return modes[choice]

    def _timer(self, mode: int, rows: int):
        """One step of ``rows`` rows in ``mode``, as a function to time."""
        gates, kind = self._gates(mode, rows), self.kind
        token = torch.zeros(rows, dtype=torch.int64)
        hs = [torch.zeros(rows, w.shape[1]) for w in self.w_hh]
        cs = hs if kind == KINDS["lstm"] else []
        return lambda: stack_step(kind, mode, token, list(hs), list(cs), *gates, [])

    def _gates(self, mode: int, rows: int) -> tuple:
        """``(table, w_ih, w_hh, b_ih, b_hh, p_ih, p_hh)`` for ``mode`` at ``rows``."""
        if mode == BLAS:
            none = [None] * len(self.w_hh)
            return self.table, self.w_ih, self.w_hh, self.b_ih, self.b_hh, none, none
        if mode == PACKED:
            return self._prepared_form(PACKED, rows)
        if mode not in self._forms:
            self._forms[mode] = self._prepared_form(mode, 1)
        return self._forms[mode]

    @functools.cached_property
    def _fast_form(self) -> tuple:
        """``(table, w_ih, w_hh, b_ih, b_hh)`` off the exact path: an LSTM's in the one-sigmoid form."""
        if self.kind != KINDS["lstm"]:
            return self.table, self.w_ih, self.w_hh, self.b_ih, self.b_hh
        with torch.inference_mode():
            return _one_sigmoid(self.table, self.w_ih, self.w_hh, self.b_ih, self.b_hh)

    def _prepared_form(self, mode: int, rows: int) -> tuple:
        """:attr:`_fast_form` with its products' weights prepared for ``mode`` (layer 0's input
        projection is the table, never a product)."""
        table, w_ih, w_hh, b_ih, b_hh = self._fast_form
        with torch.inference_mode():
            ih = [(w_ih[0], b_ih[0], None)] + [_prepare(w, b, mode, rows) for w, b in zip(w_ih[1:], b_ih[1:])]
            hh = [_prepare(w, b, mode, rows) for w, b in zip(w_hh, b_hh)]
        return (table, [part[0] for part in ih], [part[0] for part in hh], [part[1] for part in ih],
                [part[1] for part in hh], [part[2] for part in ih], [part[2] for part in hh])


def _one_sigmoid(table: Tensor, w_ih: list, w_hh: list, b_ih: list, b_hh: list) -> tuple:
    """An LSTM's weights for :func:`stack_step`'s one-sigmoid form: the cell gate's rows doubled
    (exact in floating point), and each layer's two biases joined into one (into the table for
    layer 0), so that a step adds one product to one input term."""

    def doubled(t: Tensor, dim: int = 0) -> Tensor:
        out, quarter = t.clone(), t.shape[dim] // 4
        out.narrow(dim, 2 * quarter, quarter).mul_(2)
        return out

    def joined(a: Tensor | None, b: Tensor | None) -> Tensor | None:
        return b if a is None else a if b is None else a + b

    upper = range(1, len(w_hh))
    biases = [joined(b_ih[i], b_hh[i]) for i in upper]
    return (doubled(joined(table, b_hh[0]), 1), w_ih[:1] + [doubled(w_ih[i]) for i in upper],
            [doubled(w) for w in w_hh], b_ih[:1] + [None if b is None else doubled(b) for b in biases],
            [None] * len(w_hh))
