"""Beam search: the most likely continuations of each prompt, ``beam`` hypotheses at a time.

All prompts of one width search together, one (prompts x beam) batch of model steps; finished
hypotheses (by length or stop string) are kept in a per-prompt list of the best, and the search
ends early once no live beam can still enter any prompt's results.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch

from charforge.model import CharModel
from charforge.sampling.priming import prime, select
from charforge.sampling.settings import Sample
from charforge.sampling.stops import StopMatcher, first_stop
from charforge.vocab import Vocab


@torch.inference_mode()
def beam_search(model: CharModel, vocab: Vocab, device: torch.device, rows: list, decode, round_steps: int,
                progress) -> Iterator[tuple[object, list[Sample]]]:
    """Beam search for rows of one width: (row, its best hypotheses, best first) per row.

    A row is the engine's record of one prompt (``ids``, ``settings``, ``request`` and
    ``result(...)``, which makes its :class:`Sample`); ``decode`` turns ids into text; every
    ``round_steps`` steps the search checks whether every prompt's results are settled.
    """
    dev, V = device, len(vocab)
    for r in rows:
        if r.settings.length == 0:
            yield r, [r.result(i, "", "length", 0.0) for i in range(r.request.num_samples)]
    rows = [r for r in rows if r.settings.length > 0]
    if not rows:
        return
    P, N = len(rows), rows[0].settings.beam
    lengths = torch.tensor([r.settings.length for r in rows], device=dev)
    S = max(r.settings.length for r in rows)
    state, token, position = prime(model, [r.ids for r in rows], dev)
    rep = torch.arange(P, device=dev).repeat_interleave(N)
    state, token, t = select(state, rep), token[rep], (position[rep] if model.uses_time else None)
    scores = torch.full((P, N), float("-inf"), device=dev)
    scores[:, 0] = 0.0
    fin_scores = torch.full((P, N), float("-inf"), device=dev)
    fin_step = torch.full((P, N), -1, dtype=torch.int64, device=dev)
    fin_beam = torch.zeros((P, N), dtype=torch.int64, device=dev)
    need = torch.tensor([r.request.num_samples - 1 for r in rows], device=dev).unsqueeze(1)
    beam_ids = torch.arange(N, device=dev).expand(P, N)
    offsets = (torch.arange(P, device=dev) * N).unsqueeze(1)
    matcher = StopMatcher([r.settings.stop for r in rows], vocab, dev)
    window = matcher.initial(P * N) if matcher.active else None
    row_stops = matcher.row_mask[rep] if matcher.active else None
    hist_tok, hist_par = [], []
    for s in range(S):
        logits, state = model.step(token, state, t)
        if t is not None:
            t = t + 1
        logp = logits.float().log_softmax(dim=-1).view(P, N, V)
        top, idx = (scores.unsqueeze(2) + logp).view(P, N * V).topk(N, dim=-1)
        parent, new = idx // V, idx % V
        flat = (offsets + parent).view(-1)
        state, token = select(state, flat), new.view(-1)
        hist_tok.append(new)
        hist_par.append(parent)
        scores = top
        done = (lengths == s + 1).unsqueeze(1).expand(P, N)
        if window is not None:
            window = torch.cat([window[flat, 1:], token.unsqueeze(1)], dim=1)
            done = done | matcher.hits(window, row_stops).view(P, N)
        finished_now = scores.masked_fill(~done, float("-inf"))
        merged, pick = torch.cat([fin_scores, finished_now], dim=1).topk(N, dim=-1)
        fin_step = torch.cat([fin_step, torch.full_like(fin_step, s)], dim=1).gather(1, pick)
        fin_beam = torch.cat([fin_beam, beam_ids], dim=1).gather(1, pick)
        fin_scores = merged
        scores = scores.masked_fill(done, float("-inf"))
        if (s + 1) % round_steps == 0:
            # Log-probabilities only fall: once a prompt's n-th best finished hypothesis beats
            # its best live beam, nothing left can enter its results.
            settled = fin_scores.gather(1, need).squeeze(1) >= scores.max(dim=1).values
            if bool(settled.all()):
                break
    tok_hist = torch.stack(hist_tok).cpu()
    par_hist = torch.stack(hist_par).cpu()
    fin_step, fin_beam, fin_scores = fin_step.cpu(), fin_beam.cpu(), fin_scores.cpu()
    steps_run = len(hist_tok)
    cur = torch.full((P, N), -1, dtype=torch.int64)
    out = torch.zeros((P, N, steps_run), dtype=torch.int64)
    for s in reversed(range(steps_run)):
        cur = torch.where(fin_step == s, fin_beam, cur)
        live = cur >= 0
        c = cur.clamp(min=0)
        out[:, :, s] = torch.where(live, tok_hist[s].gather(1, c), 0)
        cur = torch.where(live, par_hist[s].gather(1, c), cur)
    chars = 0
    for p, row in enumerate(rows):
        results = []
        for i in range(row.request.num_samples):
            end = int(fin_step[p, i])
            if end < 0 or not math.isfinite(float(fin_scores[p, i])):
                continue
            text = decode(out[p, i, :end + 1])
            cut = first_stop(text, row.settings.stop) if row.settings.stop else -1
            reason = "stop" if cut >= 0 else "length"
            text = text[:cut] if cut >= 0 else text
            chars += len(text)
            results.append(row.result(i, text, reason, float(fin_scores[p, i])))
        yield row, results
    if progress is not None:
        progress(chars, sum(r.request.num_samples for r in rows))


def chunks_by_width(rows: list, batch_size: int) -> Iterator[list]:
    """Beam rows grouped by width, in input order, with at most ``batch_size`` beams per batch."""
    by_width: dict[int, list] = {}
    for row in rows:
        by_width.setdefault(row.settings.beam, []).append(row)
    for width, group in by_width.items():
        per_batch = max(1, batch_size // width)
        for i in range(0, len(group), per_batch):
            yield group[i:i + per_batch]
