"""Generating text from a model, one character per step, with the step path of its cells.

Two paths compute the same thing. The generic one calls ``model.step`` and :func:`pick` once
per character and works for any cell. The fast one serves models whose every layer is a
built-in fused cell (``Cell.step_kernel``): it runs whole chunks of steps in one TorchScript
loop (plain Python when TorchScript is unavailable) that calls the ``torch.*_cell`` ops on the
raw weights, and reads the first layer's input projection from a table holding ``x W_ih + b``
for every vocabulary entry, so a step costs one (batch, hidden) x (hidden, gates) product per
layer plus the read-out. Both draw one uniform number per sample and step from the same
generator and invert the same CDF (:func:`choose`), so for the same seed they give the same
text: bit for bit with one-hot input (the table rows are exactly what the one-hot product
gives); with an embedding, up to matrix-multiply rounding in the table (~1e-7), which can flip a
character only when a uniform number lands that close to a CDF boundary.

The fast path runs on the CPU; on other devices sampling takes the generic path.
From :data:`BIG_BATCH` samples up, the fast path multiplies with oneDNN's packed weights
(``torch.ops.mkldnn``) instead of the BLAS the step path uses: about 1.3x faster per product on
the AMD CPUs this was measured on, in float32 too, but rounded differently, so there the texts
agree except where a character's choice was within ~1e-6 of a tie (greedy) or of a CDF
boundary (sampling); the distribution sampled is the same.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from charforge.errors import CharforgeError
from charforge.model import CharModel
from charforge.vocab import Vocab


@dataclass(frozen=True)
class SampleOptions:
    """How to pick each next character."""

    length: int = 500
    temperature: float = 1.0
    top_k: int = 0  # 0: no limit
    top_p: float = 1.0  # nucleus sampling; 1: no limit
    greedy: bool = False  # always the most likely character (also temperature 0)

    def check(self) -> "SampleOptions":
        if self.length < 0:
            raise CharforgeError(f"--length must not be negative, not {self.length}.")
        if not self.temperature >= 0:
            raise CharforgeError(f"--temperature must be 0 or more, not {self.temperature}.")
        if self.top_k < 0:
            raise CharforgeError(f"--top-k must not be negative, not {self.top_k}.")
        if not 0 < self.top_p <= 1:
            raise CharforgeError(f"--top-p must be in (0, 1], not {self.top_p}.")
        return self


def is_greedy(options: SampleOptions, dtype: torch.dtype) -> bool:
    """Greedy decoding: asked for, or a temperature that is 0 in the logits' type."""
    return options.greedy or options.temperature < torch.finfo(dtype).tiny


def choose(logits: Tensor, generator: Optional[torch.Generator], greedy: bool, temperature: float,
           top_k: int, top_p: float) -> Tensor:
    """Next tokens (batch,) from logits (batch, vocab), by inverting the CDF at one uniform number
    per row drawn from ``generator``. TorchScript-compatible: the fast sampling loop calls it too."""
    if greedy:
        return logits.argmax(dim=-1)
    if temperature != 1.0:
        # shifted so that the largest logit is 0: a tiny temperature gives 0 and -inf, never inf - inf = nan
        logits = (logits - logits.amax(dim=-1, keepdim=True)) / temperature
    vocab = logits.shape[-1]
    if top_k > 0 and top_k < vocab:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        drop = probs.cumsum(dim=-1) - probs >= top_p
        drop[:, 0] = False  # the most likely token always stays (a top-p below float32's range is 0)
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    cdf = logits.softmax(dim=-1).cumsum(dim=-1)
    u = torch.rand([logits.shape[0], 1], generator=generator, dtype=torch.float32, device=logits.device)
    # the first token whose cumulative probability exceeds u * total: zero-probability tokens never win
    token = torch.searchsorted(cdf, u.to(cdf.dtype) * cdf[:, -1:], right=True).squeeze(-1)
    return token.clamp_(max=vocab - 1)


def pick(logits: Tensor, options: SampleOptions, generator: torch.Generator | None) -> Tensor:
    """Next tokens (batch,) from logits (batch, vocab): greedy, or one uniform draw per row."""
    return choose(logits, generator, is_greedy(options, logits.dtype), float(options.temperature),
                  options.top_k, float(options.top_p))


# -- the fast path ---------------------------------------------------------------------------------

_KINDS = {"lstm": 0, "gru": 1, "rnn_tanh": 2, "rnn_relu": 3}
_TABLE_LIMIT = 1 << 26  # table entries (vocabulary x gates) above which the fast path is not used


def fused_stack_step(kind: int, token: Tensor, hs: List[Tensor], cs: List[Tensor], table: Tensor,
                     w_ih: List[Tensor], w_hh: List[Tensor], b_ih: List[Optional[Tensor]],
                     b_hh: List[Optional[Tensor]], no_x: Tensor, no_w: Tensor) -> Tensor:
    """One step of a stack of fused cells on raw weights; updates ``hs``/``cs`` in place and returns
    the top layer's output. Layer 0's input projection is ``table[token]``, passed as the bias of
    an input with no columns (``no_x``, ``no_w``): ``torch.*_cell`` then adds exactly that row
    where the generic step adds ``x W_ih + b``. TorchScript-compatible; shared with
    ``charforge.generate``'s per-row loop."""
    x = no_x
    for layer in range(len(hs)):
        if layer == 0:
            wi, bi = no_w, table.index_select(0, token)
        else:
            wi, bi = w_ih[layer], b_ih[layer]
        if kind == 0:
            h, c = torch.lstm_cell(x, [hs[layer], cs[layer]], wi, w_hh[layer], bi, b_hh[layer])
            cs[layer] = c
        elif kind == 1:
            h = torch.gru_cell(x, hs[layer], wi, w_hh[layer], bi, b_hh[layer])
        elif kind == 2:
            h = torch.rnn_tanh_cell(x, hs[layer], wi, w_hh[layer], bi, b_hh[layer])
        else:
            h = torch.rnn_relu_cell(x, hs[layer], wi, w_hh[layer], bi, b_hh[layer])
        hs[layer] = h
        x = h
    return x


def fast_steps(kind: int, n: int, token: Tensor, hs: List[Tensor], cs: List[Tensor], table: Tensor,
               w_ih: List[Tensor], w_hh: List[Tensor], b_ih: List[Optional[Tensor]],
               b_hh: List[Optional[Tensor]], head_w: Tensor, head_b: Optional[Tensor],
               generator: Optional[torch.Generator], greedy: bool, temperature: float, top_k: int,
               top_p: float, out: Tensor):
    """``n`` sampling steps of a stack of fused cells (:func:`fused_stack_step`); tokens go to
    ``out`` (n, batch)."""
    batch = token.shape[0]
    no_x = torch.empty([batch, 0], dtype=table.dtype, device=table.device)
    no_w = torch.empty([table.shape[1], 0], dtype=table.dtype, device=table.device)
    for i in range(n):
        x = fused_stack_step(kind, token, hs, cs, table, w_ih, w_hh, b_ih, b_hh, no_x, no_w)
        token = choose(F.linear(x, head_w, head_b), generator, greedy, temperature, top_k, top_p)
        out[i] = token
    return token, hs, cs


_compiled: dict = {}


def scripted(fn):
    """``fn`` compiled by TorchScript once per process; ``fn`` itself when that fails or when
    ``CHARFORGE_SAMPLER_JIT=0`` (the same results either way). Serves the sampler's and
    ``charforge.generate``'s loops."""
    if fn not in _compiled:
        compiled = fn
        if os.environ.get("CHARFORGE_SAMPLER_JIT", "1") != "0":
            try:
                import warnings

                with warnings.catch_warnings():  # TorchScript is deprecated, not gone; it still pays here
                    warnings.simplefilter("ignore")
                    compiled = torch.jit.script(fn)
            except Exception:  # noqa: BLE001 - any failure to compile leaves the Python loop, same results
                compiled = fn
        _compiled[fn] = compiled
    return _compiled[fn]


BIG_BATCH = 32


class _Packed:
    """``F.linear(x, w, b)`` through oneDNN with the weight packed once for ``batch`` rows."""

    def __init__(self, w: Tensor, b: Tensor | None, batch: int):
        self.w, self.b = torch.ops.mkldnn._reorder_linear_weight(w, batch), b

    def __call__(self, x: Tensor) -> Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.w, self.b, "none", [], "")

    _usable: dict = {}

    @classmethod
    def usable(cls, w: Tensor, b: Tensor | None, batch: int) -> bool:
        """Whether this build has the op and it computes ``F.linear`` (checked once per shape)."""
        if w.device.type != "cpu" or w.dtype != torch.float32 or not torch.backends.mkldnn.is_available():
            return False
        key = (tuple(w.shape), b is not None, batch)
        if key not in cls._usable:
            try:
                g = torch.Generator().manual_seed(0)
                x, w2 = torch.randn(batch, w.shape[1], generator=g), torch.randn(w.shape, generator=g)
                b2 = None if b is None else torch.randn(b.shape, generator=g)
                got, want = _Packed(w2, b2, batch)(x), F.linear(x, w2, b2)
                cls._usable[key] = got.shape == want.shape and bool(torch.allclose(got, want, rtol=1e-4, atol=1e-4))
            except Exception:  # noqa: BLE001 - no oneDNN, or an op that changed: the BLAS path is always there
                cls._usable[key] = False
        return cls._usable[key]


def packed_stack_step(kind: int, token: Tensor, hs: list, cs: list, table: Tensor, ih: list, hh: list) -> Tensor:
    """One step of a stack of fused cells through ``_Packed`` (oneDNN) products, the gate arithmetic
    as ``torch.*_cell`` does it; updates ``hs``/``cs`` in place and returns the top layer's output.
    Shared by :func:`big_batch_steps` and ``charforge.generate``'s per-row loop."""
    x = table  # unused for layer 0: its input projection is a row of the table
    for layer in range(len(hs)):
        gi = table.index_select(0, token) if layer == 0 else ih[layer](x)
        gh = hh[layer](hs[layer])
        if kind == 0:
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
        else:
            pre = gh.add_(gi)
            h = pre.tanh_() if kind == 2 else pre.relu_()
        hs[layer] = h
        x = h
    return x


def big_batch_steps(kind: int, n: int, token: Tensor, hs: List[Tensor], cs: List[Tensor], table: Tensor,
                    ih: list, hh: list, head, generator, greedy: bool, temperature: float, top_k: int,
                    top_p: float, out: Tensor):
    """:func:`fast_steps` for many samples, through :func:`packed_stack_step`. Plain Python: at
    this size a step costs milliseconds."""
    for i in range(n):
        x = packed_stack_step(kind, token, hs, cs, table, ih, hh)
        token = choose(head(x), generator, greedy, temperature, top_k, top_p)
        out[i] = token
    return token, hs, cs


class FastPlan:
    """The raw weights the fast loop needs, taken from a model whose layers all allow it."""

    def __init__(self, kind: int, table: Tensor, weights: list[tuple], head_w: Tensor, head_b: Tensor | None):
        self.kind, self.table, self.head_w, self.head_b = kind, table, head_w, head_b
        self.w_ih = [w[0] for w in weights]
        self.w_hh = [w[1] for w in weights]
        self.b_ih = [w[2] for w in weights]
        self.b_hh = [w[3] for w in weights]

    @classmethod
    def of(cls, model) -> "FastPlan | None":
        """The plan for ``model`` as it is now, or None when the generic path must run."""
        if (not isinstance(model, CharModel) or type(model).step is not CharModel.step or model.uses_time
                or (model.training and model.drop.p > 0)):
            return None
        kinds, weights = set(), []
        for layer in model.layers:
            kernel = getattr(layer, "step_kernel", None)
            spec = kernel() if callable(kernel) else None
            if spec is None or spec[0] not in _KINDS:
                return None
            kinds.add(spec[0])
            weights.append(tuple(w.detach() if w is not None else None for w in spec[1]))
        if len(kinds) != 1:
            return None
        w_ih, _, b_ih, _ = weights[0]
        vocab = model.vocab_size
        # CPU only: CUDA's fused lstm/gru cell kernels want 1-D biases, so the table-row-as-bias
        # trick does not carry over; a GPU step is launch-bound anyway and takes the generic path.
        if vocab * w_ih.shape[0] > _TABLE_LIMIT or w_ih.device.type != "cpu":
            return None
        with torch.inference_mode():
            if model.embed is None:  # one-hot rows: each entry is exactly one weight plus its bias
                eye = torch.eye(vocab, dtype=w_ih.dtype, device=w_ih.device)
                table = F.linear(eye, w_ih, b_ih)
            else:  # row by row: the very (1, embedding) product a step of one sample computes
                emb = model.embed.weight.detach()
                table = torch.cat([F.linear(emb[i:i + 1], w_ih, b_ih) for i in range(vocab)])
        head = model.head
        return cls(_KINDS[kinds.pop()], table, weights, head.weight.detach(),
                   None if head.bias is None else head.bias.detach())

    def packed(self, batch: int) -> tuple | None:
        """The weights packed for oneDNN, for ``batch`` >= :data:`BIG_BATCH` rows when usable."""
        if batch < BIG_BATCH or not _Packed.usable(self.w_hh[0], self.b_hh[0], batch):
            return None
        if getattr(self, "_packed", (None,))[0] != batch:
            ih = [None] + [_Packed(w, b, batch) for w, b in zip(self.w_ih[1:], self.b_ih[1:])]
            hh = [_Packed(w, b, batch) for w, b in zip(self.w_hh, self.b_hh)]
            self._packed = (batch, ih, hh, _Packed(self.head_w, self.head_b, batch))
        return self._packed[1:]

    def run(self, n: int, token: Tensor, state: list, generator, options: SampleOptions, out: Tensor):
        """``n`` steps from ``token`` and ``state`` (the model's list of per-layer tuples)."""
        hs = [s[0] for s in state]
        cs = [s[1] for s in state] if self.kind == 0 else []
        greedy = is_greedy(options, self.table.dtype)
        packed = self.packed(len(token))
        if packed is not None:
            token, hs, cs = big_batch_steps(
                self.kind, n, token, hs, cs, self.table, *packed, generator, greedy,
                float(options.temperature), options.top_k, float(options.top_p), out)
        else:
            token, hs, cs = scripted(fast_steps)(
                self.kind, n, token, hs, cs, self.table, self.w_ih, self.w_hh, self.b_ih, self.b_hh,
                self.head_w, self.head_b, generator, greedy, float(options.temperature), options.top_k,
                float(options.top_p), out)
        state = [(h, c) for h, c in zip(hs, cs)] if self.kind == 0 else [(h,) for h in hs]
        return token, state


class Sampler:
    """Primes a model on a prompt, then samples ``length`` characters for each of ``num_samples``.

    ``fast=False`` forces the generic step-by-step path (the reference the fast path is tested against).
    """

    FIRST_CHUNK, MAX_CHUNK = 8, 256  # fast path: steps per compiled call, doubling up to the maximum

    def __init__(self, model: CharModel, vocab: Vocab, device: torch.device | str = "cpu", fast: bool = True):
        self.model = model.eval()
        self.vocab = vocab
        self.device = torch.device(device)
        self.fast = fast

    def prime_ids(self, prime: str, drop_unknown: bool = False) -> Tensor:
        ids = self.vocab.encode(prime, drop_unknown=drop_unknown)
        if len(ids) == 0:  # no prompt: start as after a line break, or on the first character
            ids = torch.tensor([self.vocab.index.get("\n", 0)])
        return ids

    @torch.inference_mode()
    def tokens(self, prime: str, options: SampleOptions, num_samples: int = 1, seed: int | None = None,
               drop_unknown: bool = False) -> Iterator[Tensor]:
        """Yields the next token of every sample, (num_samples,), ``options.length`` times."""
        options.check()
        if num_samples < 1:
            raise CharforgeError(f"--num-samples must be at least 1, not {num_samples}.")
        ids = self.prime_ids(prime, drop_unknown).to(self.device)
        generator = torch.Generator(self.device).manual_seed(
            seed if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
        model, B = self.model, num_samples
        state = model.initial_state(B, self.device)
        uses_time = model.uses_time
        if len(ids) > 1:
            warm = ids[:-1].expand(B, -1)
            t = (torch.arange(len(ids) - 1, dtype=torch.float64, device=self.device).expand(B, -1)
                 if uses_time else None)
            _, state = model(warm, state, t)
        token = ids[-1:].expand(B).contiguous()
        plan = FastPlan.of(model) if self.fast and options.length > 0 else None
        if plan is not None:
            left, chunk = options.length, self.FIRST_CHUNK
            while left > 0:
                n = min(chunk, left)
                out = torch.empty((n, B), dtype=torch.int64, device=self.device)
                token, state = plan.run(n, token, state, generator, options, out)
                yield from out
                left, chunk = left - n, min(chunk * 2, self.MAX_CHUNK)
            return
        position = len(ids) - 1
        for _ in range(options.length):
            t = torch.full((B,), float(position), dtype=torch.float64, device=self.device) if uses_time else None
            logits, state = model.step(token, state, t)
            token = pick(logits, options, generator)
            position += 1
            yield token

    def sample(self, prime: str, options: SampleOptions, num_samples: int = 1, seed: int | None = None,
               drop_unknown: bool = False) -> list[str]:
        """Whole continuations (without the prompt), one per sample."""
        steps = list(self.tokens(prime, options, num_samples, seed, drop_unknown))
        if not steps:
            return [""] * num_samples
        table = torch.stack(steps, dim=1).cpu()
        return [self.vocab.decode(row) for row in table]
