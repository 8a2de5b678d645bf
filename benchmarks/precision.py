"""What generation's precision costs in quality: held-out loss through the fast step path.

    python benchmarks/precision.py runs/grimms ../shared/corpora/grimms_fairy_tales.txt

Feeds the last 10% of the corpus (the part training held out; ``--chars`` of it) through
``charforge.sampling.fastpath.stack_step`` one character at a time in every fixed precision
(float32, float16, int8: what ``auto`` chooses among),
with the weights exactly as generation prepares them, and prints the mean loss in nats per
character: the float32 row is what training and ``charforge score`` compute (up to the last bit
of rounding).
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F

import charforge
from charforge.sampling import fastpath
from charforge.sampling.settings import PRECISIONS


@torch.inference_mode()
def held_out_loss(plan: fastpath.FastWeights, ids: torch.Tensor, streams: int, hidden: list[int]) -> float:
    """Mean next-character loss over ``ids`` cut into ``streams`` rows, state carried along each."""
    length = len(ids) // streams
    x = ids[:streams * length].view(streams, length)
    mode, head_mode, table, w_ih, w_hh, b_ih, b_hh, p_ih, p_hh, head_w = plan.weights(streams)
    hs = [torch.zeros(streams, h) for h in hidden]
    cs = [torch.zeros(streams, h) for h in hidden] if plan.kind == fastpath.KINDS["lstm"] else []
    total = 0.0
    for t in range(length - 1):
        out = fastpath.stack_step(plan.kind, mode, x[:, t], hs, cs, table, w_ih, w_hh, b_ih, b_hh, p_ih, p_hh, [])
        logits = fastpath.product(out, head_w, plan.head_b, None, head_mode, [])
        total += float(F.cross_entropy(logits, x[:, t + 1], reduction="sum"))
    return total / (streams * (length - 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a run directory or a .safetensors file")
    parser.add_argument("corpus", help="the text file the model was trained on")
    parser.add_argument("--chars", type=int, default=20_000, help="held-out characters to score")
    parser.add_argument("--streams", type=int, default=50, help="rows scored together")
    args = parser.parse_args()
    model = charforge.load(args.checkpoint, device="cpu")
    text = open(args.corpus, encoding="utf-8").read()
    ids = model.vocab.encode(text[int(len(text) * 0.9):][:args.chars], drop_unknown=True)
    hidden = [layer.hidden_size for layer in model.model.layers]
    print(f"# {model}; {len(ids):,} held-out characters")
    print("| precision | nats/char | bits/char | difference |")
    print("| --- | ---: | ---: | ---: |")
    base = None
    for precision in PRECISIONS[1:]:
        try:
            plan = fastpath.FastWeights.of(model.model, precision)
        except charforge.CharforgeError as exc:
            print(f"| {precision} | {exc} | | |")
            continue
        loss = held_out_loss(plan, ids, args.streams, hidden)
        base = loss if base is None else base
        print(f"| {precision} | {loss:.5f} | {loss / math.log(2):.5f} | {loss - base:+.5f} |")


if __name__ == "__main__":
    main()
