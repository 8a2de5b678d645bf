"""charforge against plain PyTorch, in one run on one machine: one table of ratios and figures.

Every case runs charforge and a plain hand-written PyTorch reference of the same model
(embedding or one-hot input, ``nn.RNN``/``nn.LSTM``/``nn.GRU`` with ``num_layers`` as a user
writes it, a linear head, Adam, truncated BPTT with carried state, gradient-norm clipping)
in alternating rounds within this process, so a machine shared with other work slows both
alike: read the ratio column first. The table is printed and written to
``benchmarks/RESULTS.md`` with the date, the machine and its load.

    .venv/bin/python benchmarks/bench.py                  # every case (about 15 minutes on 2 cores)
    .venv/bin/python benchmarks/bench.py --quick          # short rounds, no 2.5-minute quality runs
    .venv/bin/python benchmarks/bench.py --only train,sample --no-write
    .venv/bin/python benchmarks/bench.py --device cuda    # the same table on a GPU
    bash benchmarks/gpu.sh                                # that table in under 5 minutes (see its header)

Cases: training chars/s of each built-in cell at 2x128 (batch 50, seq 50) and 1x512 (batch 32,
seq 100) with 1 thread and all cores, measured through the real ``Trainer`` (hooks, metrics,
progress and all, validation excluded); ``phased-lstm`` next to the fused ``lstm`` when that
plugin is installed; sampling chars/s of a 1x512 LSTM through the generation engine at batch 1
(one thread) and 256 (all cores), in the default precision and in float32, next to plain
``nn.LSTM``/``nn.LSTMCell`` step loops; validation loss on
tiny-shakespeare after 2.5 minutes of default ``charforge train`` next to a hand-written loop
with the same budget; preparing a 100 MB corpus (time, peak memory) and the start-up of a
second run on it; ``charforge --help``; the peak RSS of a training run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from machine import cpu_model

from charforge.config import TrainConfig
from charforge.data import Streams, split
from charforge.hookspecs import hookimpl
from charforge.model import build_model
from charforge.plugins import Registry, make_plugin_manager
from charforge.sampling.engine import BatchGenerator
from charforge.sampling.fastpath import FP16, INT8, FastWeights
from charforge.sampling.settings import Request, Settings
from charforge.vocab import Vocab

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpora" / "tinyshakespeare.txt"
RESULTS = REPO / "benchmarks" / "RESULTS.md"
CHARFORGE = Path(sys.executable).parent / "charforge"
CORES = os.cpu_count() or 1
TRAIN_SIZES = [(2, 128, 50, 50), (1, 512, 32, 100)]  # layers, hidden, batch, seq_len
TRAIN_EMBEDDING = 64  # both sides of the training-throughput cases embed characters in 64 dimensions
QUALITY_MINUTES = 2.5
# The hand-written loop of the quality case: a well-chosen plain LSTM (1x512, embedding 64,
# batch 32, seq 100, Adam 2e-3 constant, clip 5), the 40 lines a careful user writes.
PLAIN_QUALITY = dict(kind="lstm", layers=1, hidden=512, emb=64, batch=32, seq=100, lr=2e-3)

ROWS: list[dict] = []  # the table, in order


def row(section: str, case: str, charforge: float | None, reference: float | None, unit: str,
        target: str = "", ok: bool | None = None, note: str = "", ratio: float | None = None) -> None:
    if ratio is None and charforge and reference:
        ratio = charforge / reference
    ROWS.append(dict(section=section, case=case, charforge=charforge, reference=reference, unit=unit,
                     ratio=ratio, target=target, ok=ok, note=note, load=os.getloadavg()[0]))
    r = ROWS[-1]
    print(f"  {case:<44} {_num(charforge, unit):>10} {_num(reference, unit):>10} {unit:<8} "
          f"{'' if ratio is None else f'{ratio:.2f}x':>6} {target:<10} {_ok(ok):<4} load {r['load']:.1f} {note}",
          flush=True)


def _num(x, unit: str = "") -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if unit == "nats":
        return f"{x:.4f}"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _ok(ok) -> str:
    return "" if ok is None else ("pass" if ok else "FAIL")


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


# -- the plain PyTorch reference ------------------------------------------------------------------

class PlainModel(nn.Module):
    """Embedding (or one-hot), one multi-layer nn.RNN/LSTM/GRU, a linear head: what a user writes."""

    def __init__(self, kind: str, vocab: int, emb: int, hidden: int, layers: int):
        super().__init__()
        self.vocab = vocab
        self.embed = nn.Embedding(vocab, emb) if emb else None
        rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind]
        self.rnn = rnn(emb or vocab, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x, h=None):
        x = self.embed(x) if self.embed is not None else F.one_hot(x, self.vocab).float()
        out, h = self.rnn(x, h)
        return self.head(out), h


def _detach(h):
    return tuple(t.detach() for t in h) if isinstance(h, tuple) else h.detach()


class PlainLoop:
    """The hand-written training loop: contiguous streams, carried state, Adam, clip 5."""

    def __init__(self, ids, kind, layers, hidden, emb, batch, seq, lr=2e-3, device="cpu", seed=0):
        torch.manual_seed(seed)
        self.device, self.batch, self.seq = device, batch, seq
        n = (len(ids) - 1) // batch
        self.x = ids[: batch * n].view(batch, n).to(device)
        self.y = ids[1: batch * n + 1].view(batch, n).to(device)
        self.windows = n // seq
        self.vocab = int(ids.max()) + 1
        self.model = PlainModel(kind, self.vocab, emb, hidden, layers).to(device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.h, self.i = None, 0

    def step(self):
        if self.i == self.windows:
            self.i, self.h = 0, None
        cols = slice(self.i * self.seq, (self.i + 1) * self.seq)
        x, y = self.x[:, cols].long(), self.y[:, cols].long()
        logits, h = self.model(x, self.h)
        loss = F.cross_entropy(logits.reshape(-1, self.vocab), y.reshape(-1))
        self.opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.opt.step()
        self.h = _detach(h)
        self.i += 1
        return loss

    def run(self, seconds: float) -> tuple[float, float]:
        """Train for ``seconds``; (chars per second, chars per CPU-second of this process)."""
        # a GPU's queue is waited on as often as the trainer reads its loss (log_every), not every step
        every = 1 if torch.device(self.device).type == "cpu" else TrainConfig.log_every
        steps, start, cpu = 0, time.perf_counter(), time.process_time()
        while True:
            self.step()
            steps += 1
            if steps % every:
                continue
            sync(self.device)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                chars = steps * self.batch * self.seq
                return chars / elapsed, chars / (time.process_time() - cpu)

    @torch.no_grad()
    def evaluate(self, val_ids) -> float:
        """Mean validation loss (nats/char), state carried across windows as charforge does."""
        self.model.eval()
        data = Streams.fitting(val_ids, self.batch, self.seq, self.device)
        total, h = 0.0, None
        for i in range(data.windows):
            x, y, _ = data.window(i)
            logits, h = self.model(x, h)
            total += float(F.cross_entropy(logits.reshape(-1, self.vocab), y.reshape(-1), reduction="sum"))
        self.model.train()
        return total / (data.windows * data.chars_per_window)


# -- charforge through its real trainer ----------------------------------------------------------

class _Clock:
    """A plugin that timestamps the start of training and every logged step."""

    def __init__(self):
        self.marks: list[tuple[float, float, int]] = []

    @hookimpl
    def on_train_start(self, run):
        self.marks.append((time.perf_counter(), time.process_time(), run.step))

    @hookimpl
    def on_step_end(self, run, step, metrics):
        self.marks.append((time.perf_counter(), time.process_time(), step))


def charforge_rate(cell: str, layers: int, hidden: int, emb: int, batch: int, seq: int, threads: int,
                   seconds: float, device: str, runs: Path) -> tuple[float, float]:
    """Training (chars/s, chars/CPU-s) of ``Trainer.run``, validation excluded: from its first
    logged step (the first steps warm caches up) to its last, or from its start in short runs."""
    from charforge.trainer import Trainer

    clock = _Clock()
    pm = make_plugin_manager(extra=[clock], block=["console"])
    config = TrainConfig(corpus=str(CORPUS), cell=cell, hidden_size=hidden, num_layers=layers,
                         embedding_dim=emb, batch_size=batch, seq_len=seq, minutes=seconds / 60,
                         threads=threads, device=device, val_fraction=0.01, eval_every=10**9,
                         sample_length=0)
    trainer = Trainer(config, pm=pm, runs_root=runs)
    trainer.run()
    marks = clock.marks
    first = marks[1] if len(marks) > 2 and marks[-1][2] - marks[1][2] >= 0.6 * marks[-1][2] else marks[0]
    (t0, c0, s0), (t1, c1, s1) = first, marks[-1]
    return (s1 - s0) * batch * seq / (t1 - t0), (s1 - s0) * batch * seq / (c1 - c0)


def interleave(measures: dict, rounds: int) -> dict:
    """Median of each measurement over alternating rounds, plus the median ratio of the first two.

    A measurement returns chars/s, or (chars/s, chars per CPU-second): then ``cpu_ratio`` is the
    ratio of the second figures, the steadier one on a loaded machine with one thread."""
    values: dict = {k: [] for k in measures}
    for _ in range(rounds):
        for k, f in measures.items():
            r = f()
            values[k].append(r if isinstance(r, tuple) else (r, math.nan))
    out = {k: statistics.median(w for w, _ in v) for k, v in values.items()}
    out.update({f"{k}_cpu": statistics.median(c for _, c in v) for k, v in values.items()})
    a, b = list(measures)[:2]
    out["ratio"] = statistics.median(x[0] / y[0] for x, y in zip(values[a], values[b]))
    out["cpu_ratio"] = statistics.median(x[1] / y[1] for x, y in zip(values[a], values[b]))
    return out


def _cpu_note(r: dict, threads: int, device: str) -> str:
    """On a GPU the host's CPU-seconds are mostly waiting on the device: no note there."""
    steady = threads == 1 and device == "cpu" and math.isfinite(r["cpu_ratio"])
    return f"(per CPU-second: {r['cpu_ratio']:.2f}x)" if steady else ""


def bench_train(args, runs: Path, ids) -> None:
    print(f"training chars/s (embedding {TRAIN_EMBEDDING}, Adam, clip 5; {args.rounds} alternating rounds "
          f"of {args.seconds:g} s)")
    thread_counts = [1] if args.device != "cpu" else sorted({1, CORES})
    for cell in ("rnn", "lstm", "gru"):
        for layers, hidden, batch, seq in TRAIN_SIZES:
            for threads in thread_counts:
                torch.set_num_threads(threads)
                plain = PlainLoop(ids, cell, layers, hidden, TRAIN_EMBEDDING, batch, seq, device=args.device)
                plain.run(0.5)
                r = interleave({
                    "charforge": lambda: charforge_rate(cell, layers, hidden, TRAIN_EMBEDDING, batch, seq,
                                                        threads, args.seconds, args.device, runs),
                    "plain": lambda: plain.run(args.seconds)}, args.rounds)
                where = f"{threads} thr" if args.device == "cpu" else args.device
                row("train", f"train {cell} {layers}x{hidden} b{batch} s{seq} {where}", r["charforge"],
                    r["plain"], "chars/s", ">= 0.95x", r["ratio"] >= 0.95, ratio=r["ratio"],
                    note=_cpu_note(r, threads, args.device))


def bench_phased(args, runs: Path) -> None:
    if "phased-lstm" not in Registry(make_plugin_manager()).names("cell"):
        print("phased-lstm is not registered: its case is skipped")
        return
    print("phased-lstm next to the fused lstm, both through the Trainer (one-hot input)")
    thread_counts = [1] if args.device != "cpu" else sorted({1, CORES})
    for layers, hidden, batch, seq in TRAIN_SIZES:
        for threads in thread_counts:
            r = interleave({
                "phased": lambda: charforge_rate("phased-lstm", layers, hidden, 0, batch, seq, threads,
                                                 args.seconds, args.device, runs),
                "lstm": lambda: charforge_rate("lstm", layers, hidden, 0, batch, seq, threads,
                                               args.seconds, args.device, runs)}, args.rounds)
            where = f"{threads} thr" if args.device == "cpu" else args.device
            row("phased", f"phased-lstm / lstm {layers}x{hidden} b{batch} s{seq} {where}", r["phased"],
                r["lstm"], "chars/s", ">= 0.5x", r["ratio"] >= 0.5, ratio=r["ratio"],
                note=_cpu_note(r, threads, args.device))


# -- sampling -------------------------------------------------------------------------------------

def sampling_model(vocab_size: int, device: str):
    """charforge's default model at 1x512 LSTM (its default input), and a plain copy of it."""
    config = TrainConfig(cell="lstm", hidden_size=512, num_layers=1)
    torch.manual_seed(0)
    model = build_model(config, vocab_size, Registry(make_plugin_manager())).to(device).eval()
    plain = PlainModel("lstm", vocab_size, config.embedding_dim, 512, 1).to(device).eval()
    cell = nn.LSTMCell(config.embedding_dim or vocab_size, 512).to(device).eval()
    with torch.no_grad():
        layer = model.layers[0].rnn
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(plain.rnn, name).copy_(getattr(layer, name))
            getattr(cell, name.removesuffix("_l0")).copy_(getattr(layer, name))
        plain.head.load_state_dict(model.head.state_dict())
        if model.embed is not None:
            plain.embed.load_state_dict(model.embed.state_dict())
    return model, plain, cell


@torch.inference_mode()
def plain_step_loop(plain: PlainModel, batch: int, steps: int, device: str) -> float:
    """``nn.LSTM`` called one step at a time, softmax and multinomial: chars/s."""
    g = torch.Generator(device).manual_seed(0)
    token, h = torch.zeros(batch, 1, dtype=torch.long, device=device), None
    sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        logits, h = plain(token, h)
        token = torch.multinomial(logits[:, -1].softmax(-1), 1, generator=g)
    sync(device)
    return steps * batch / (time.perf_counter() - start), steps * batch / (time.process_time() - cpu)


@torch.inference_mode()
def plain_cell_loop(plain: PlainModel, cell: nn.LSTMCell, batch: int, steps: int, device: str) -> float:
    """``nn.LSTMCell`` called one step at a time, softmax and multinomial: chars/s."""
    g = torch.Generator(device).manual_seed(0)
    token, h = torch.zeros(batch, dtype=torch.long, device=device), None
    sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        x = plain.embed(token) if plain.embed is not None else F.one_hot(token, plain.vocab).float()
        h = cell(x, h)
        token = torch.multinomial(plain.head(h[0]).softmax(-1), 1, generator=g).squeeze(1)
    sync(device)
    return steps * batch / (time.perf_counter() - start), steps * batch / (time.process_time() - cpu)


def charforge_sampling(engine: BatchGenerator, batch: int, steps: int, device: str) -> tuple[float, float]:
    """``batch`` samples of ``steps`` characters through the generation engine: chars/s."""
    sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in engine.run([Request("", Settings(length=steps), num_samples=batch)], seed=0):
        pass
    sync(device)
    return steps * batch / (time.perf_counter() - start), steps * batch / (time.process_time() - cpu)


def auto_choice(model, rows: int, device: str) -> str:
    """The precision ``auto`` takes for ``rows`` rows at the current thread count (measured once)."""
    plan = FastWeights.of(model, "auto") if device == "cpu" else None
    with torch.inference_mode():
        mode = plan.weights(rows)[0] if plan is not None else None
    return {INT8: "int8", FP16: "float16"}.get(mode, "float32")


def bench_sample(args, vocab: Vocab) -> None:
    model, plain, cell = sampling_model(len(vocab), args.device)
    auto = BatchGenerator(model, vocab, args.device)
    exact = BatchGenerator(model, vocab, args.device, precision="float32")
    scale = 0.2 if args.quick else 1.0
    n1 = int(3000 * scale)
    torch.set_num_threads(1)
    native = auto_choice(model, 1, args.device)
    print(f"sampling chars/s, 1x512 LSTM (charforge's default input), temperature 1; auto precision: {native}")
    for f in (lambda: charforge_sampling(auto, 1, 50, args.device),
              lambda: charforge_sampling(exact, 1, 50, args.device), lambda: plain_step_loop(plain, 1, 20, args.device)):
        f()  # compile and warm up
    r = interleave({
        "auto": lambda: charforge_sampling(auto, 1, n1, args.device),
        "exact": lambda: charforge_sampling(exact, 1, n1, args.device),
        "lstm": lambda: plain_step_loop(plain, 1, n1 // 4, args.device),
        "cell": lambda: plain_cell_loop(plain, cell, 1, n1 // 2, args.device)}, args.rounds)
    where = "1 thr" if args.device == "cpu" else args.device
    cpu = lambda k: f"({r[k + '_cpu']:,.0f} chars per CPU-second)"  # noqa: E731
    row("sample", f"sample batch 1 {where}, {native} (auto) vs nn.LSTM steps", r["auto"], r["lstm"], "chars/s",
        ">= 10,000", r["auto"] >= 10_000, ratio=r["auto"] / r["lstm"], note=cpu("auto"))
    row("sample", f"sample batch 1 {where}, float32 vs nn.LSTMCell steps", r["exact"], r["cell"], "chars/s",
        ratio=r["exact"] / r["cell"], note=cpu("exact"))
    batch1 = r["auto"]
    threads = CORES if args.device == "cpu" else 1
    torch.set_num_threads(threads)
    native = auto_choice(model, 256, args.device)
    n256 = int(200 * scale)
    r = interleave({
        "auto": lambda: charforge_sampling(auto, 256, n256, args.device),
        "exact": lambda: charforge_sampling(exact, 256, n256, args.device),
        "lstm": lambda: plain_step_loop(plain, 256, n256, args.device)}, args.rounds)
    where = f"{threads} thr" if args.device == "cpu" else args.device
    row("sample", f"sample batch 256 {where}, {native} (auto) vs nn.LSTM steps", r["auto"], r["lstm"], "chars/s",
        ">= 2x", r["auto"] / r["lstm"] >= 2, ratio=r["auto"] / r["lstm"])
    row("sample", f"sample batch 256 {where}, float32 vs nn.LSTM steps", r["exact"], r["lstm"], "chars/s",
        ratio=r["exact"] / r["lstm"])
    row("sample", f"sample batch 256 ({where}) / batch 1 (1 thr), {native}: the threads charforge picks",
        r["auto"], batch1, "chars/s", ">= 5x", r["auto"] / batch1 >= 5, ratio=r["auto"] / batch1)


# -- quality per wall-clock -----------------------------------------------------------------------

def _start_child(cmd: list[str], env, log: Path) -> tuple[subprocess.Popen, float]:
    """A child process writing to ``log``, and when it was started."""
    start = time.perf_counter()
    with open(log, "w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO), start


def _reap(proc: subprocess.Popen, start: float, wait: bool = True) -> tuple[float, float, int] | None:
    """(wall seconds, peak RSS in MB, exit status) of a child; None while it still runs, unless ``wait``."""
    pid, status, usage = os.wait4(proc.pid, 0 if wait else os.WNOHANG)
    if not pid:
        return None
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - start, usage.ru_maxrss / 1024, proc.returncode


def bench_quality(args, runs: Path, ids) -> None:
    minutes, corpus = args.quality_minutes, Path(args.quality_corpus)
    if corpus != CORPUS:
        text = corpus.read_text(encoding="utf-8")
        ids = Vocab.from_text(text).encode(text)
    print(f"quality per wall-clock: validation loss after {minutes:g} minutes on {corpus.name} (last 10% held out)")
    env = dict(os.environ, CHARFORGE_CACHE=str(runs / "cache"))
    log = runs / "quality.log"
    cmd = [str(CHARFORGE), "train", str(corpus), "--minutes", str(minutes), "--runs-dir", str(runs / "quality"),
           "--name", "default", "--device", args.device]
    metrics = runs / "quality" / "default" / "metrics.jsonl"
    child, began = _start_child(cmd, env, log)
    done = None if args.quality_together else _reap(child, began)
    while done is None and not (metrics.is_file() and metrics.stat().st_size):  # its "start": training begins
        time.sleep(0.1)
        done = _reap(child, began, wait=False)
    train_ids, val_ids = split(ids, 0.1)
    p = PLAIN_QUALITY
    torch.set_num_threads(CORES if args.device == "cpu" else 1)
    plain = PlainLoop(train_ids, p["kind"], p["layers"], p["hidden"], p["emb"], p["batch"], p["seq"], p["lr"],
                      args.device)
    plain.run(minutes * 60)
    plain_loss = plain.evaluate(val_ids)
    wall, rss, status = done or _reap(child, began)
    events = [json.loads(line) for line in metrics.read_text().splitlines()]
    start = next(e for e in events if e["event"] == "start")
    vals = [e for e in events if e["event"] == "validation"]
    final = vals[-1]["val_loss"] if vals and status == 0 else math.nan
    c = start["config"]
    cfg = (f"{c['num_layers']}x{c['hidden_size']} {c['cell']} emb {c['embedding_dim']} b{c['batch_size']} "
           f"s{c['seq_len']} lr {c['lr']:g} {c['schedule']}, {c['threads'] or 'auto'} thr")
    together = f" (both trained at once, sharing the {args.device})" if args.quality_together else ""
    row("quality", f"val loss after {minutes:g} min on {corpus.stem} (nats/char)", final, plain_loss, "nats",
        "plain - 0.02", final <= plain_loss - 0.02,
        note=f"charforge defaults: {cfg}; plain: {p['layers']}x{p['hidden']} lstm emb {p['emb']} "
             f"b{p['batch']} s{p['seq']} Adam {p['lr']:g}{together}", ratio=None)
    row("memory", "peak RSS of that training run (MB)", rss, None, "MB", note=f"wall {wall:.0f} s incl. start-up")
    validation_rows(events, minutes)


def validation_rows(events: list[dict], minutes: float) -> None:
    """What validation cost that run: when the first came, the periodic ones' share, the final one."""
    starts = {e["step"]: e for e in events if e["event"] == "validation_start"}
    ends = [e for e in events if e["event"] == "validation" and e["step"] in starts]
    steps = [e for e in events if e["event"] == "step"]
    end = next((e for e in events if e["event"] == "end"), None)
    if not (ends and steps and end):
        return
    first_step = steps[0]["time"] - steps[0]["elapsed"]  # the wall time training began at
    cost = [e["time"] - starts[e["step"]]["time"] for e in ends]
    periodic, final = cost[:-1], cost[-1]  # the last is the run's final validation, over all held-out text
    whole = sum(e.get("full", False) for e in ends[:-1])
    row("validation", "first validation and sample, after training began (s)", ends[0]["time"] - first_step,
        None, "s", "<= 35 s", ends[0]["time"] - first_step <= 35)
    row("validation", "periodic validations' share of the run's time", 100 * sum(periodic) / end["elapsed"], None,
        "%", "<= 5%", sum(periodic) <= 0.05 * end["elapsed"],
        note=f"{len(periodic)} of them, {whole} reading all the held-out text (it fitted their time)")
    row("validation", "final validation over all the held-out text (s)", final, None, "s",
        note="counted in the budget and the ETA")
    row("validation", "run's training time against its budget", end["elapsed"] / (minutes * 60), None, "x",
        "<= 1.1x", end["elapsed"] <= 1.1 * minutes * 60)


# -- corpus preparation, start-up, --help ---------------------------------------------------------

_PREPARE = """
import sys, time
t0 = time.perf_counter()
from charforge.corpora import load_corpus
from charforge.plugins import Registry, make_plugin_manager
t1 = time.perf_counter()
corpus = load_corpus(sys.argv[1], Registry(make_plugin_manager()))
print(time.perf_counter() - t1, len(corpus.ids))
"""

_START = """
import sys, time
wall0 = float(sys.argv[2])
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
import torch._dynamo  # what every torch optimizer imports on first use: timed apart
dynamo = time.perf_counter() - t1
t1 = time.perf_counter()
from charforge.config import TrainConfig
from charforge.hookspecs import hookimpl
from charforge.plugins import Registry, make_plugin_manager
from charforge.trainer import Trainer
from charforge.corpora import load_corpus
t2 = time.perf_counter()
load_corpus(sys.argv[1], Registry(make_plugin_manager()))  # the encoding cache, read back
cached = time.perf_counter() - t2
t3 = time.perf_counter()

class Started:
    @hookimpl
    def on_train_start(self, run):
        print(time.time() - wall0, t1 - t0 - dynamo, dynamo, t2 - t1, cached, time.perf_counter() - t3, flush=True)
        run.request_stop("measured")

pm = make_plugin_manager(extra=[Started()], block=["console"])
Trainer(TrainConfig(corpus=sys.argv[1], steps=1, sample_length=0), pm=pm, runs_root=sys.argv[3]).run()
"""

# A hand-written loop's start on tiny-shakespeare: import torch, read and encode the text, build
# the model and Adam, take one step: what any PyTorch training script pays before its first step.
_START_PLAIN = """
import sys, time
wall0 = float(sys.argv[2])
import torch
from torch import nn
text = open(sys.argv[1], encoding="utf-8").read()
chars = sorted(set(text))
index = {c: i for i, c in enumerate(chars)}
ids = torch.tensor([index[c] for c in text])
emb, rnn, head = nn.Embedding(len(chars), 64), nn.LSTM(64, 256, batch_first=True), nn.Linear(256, len(chars))
params = [*emb.parameters(), *rnn.parameters(), *head.parameters()]
opt = torch.optim.Adam(params, lr=5e-3)
x = ids[:64 * 65].view(64, 65)
loss = nn.functional.cross_entropy(head(rnn(emb(x[:, :-1]))[0]).flatten(0, 1), x[:, 1:].flatten())
loss.backward()
opt.step()
print(time.time() - wall0, flush=True)
"""


def bench_corpus(args, runs: Path) -> None:
    print("corpus preparation: 100 MB (tiny-shakespeare repeated), a fresh encoding cache")
    big = runs / "big.txt"
    data = CORPUS.read_bytes()
    with open(big, "wb") as f:
        for _ in range(100_000_000 // len(data)):
            f.write(data)
        f.write(data[: 100_000_000 % len(data)])
    env = dict(os.environ, CHARFORGE_CACHE=str(runs / "cache-big"))
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _PREPARE, str(big)], env=env, stdout=subprocess.PIPE,
                            text=True, cwd=REPO)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    total = time.perf_counter() - start
    prep = float(output.split()[0]) if status == 0 else math.nan
    row("corpus", "prepare 100 MB: read, vocabulary, encode, cache (s)", prep, None, "s", "< 30 s", prep < 30,
        note=f"({total:.1f} s with interpreter and imports)")
    peak = usage.ru_maxrss / 1024
    row("corpus", "prepare 100 MB: peak memory (MB)", peak, None, "MB", "< 2048", peak < 2048)
    lines = subprocess.run([sys.executable, "-c", _START, str(big), repr(time.time()), str(runs / "start")],
                           env=env, capture_output=True, text=True, cwd=REPO).stdout.split()
    since_launch, torch_import, dynamo, imports, cached, setup = (float(x) for x in lines[:6])
    plain = float(subprocess.run([sys.executable, "-c", _START_PLAIN, str(CORPUS), repr(time.time())],
                                 capture_output=True, text=True, cwd=REPO).stdout.split()[0])
    row("corpus", "second run: the encoded 100 MB corpus read from the cache (s)", cached, None, "s")
    own = imports + cached + setup
    row("corpus", "second run: charforge's own start, from torch imported to the first step (s)", own, None, "s",
        "< 2 s", own < 2, note=f"(its imports {imports:.2f} s, cache {cached:.2f} s, set-up {setup:.2f} s)")
    row("corpus", "second run: launch to first step, next to a plain loop's (s)", since_launch, plain, "s",
        note=f"(both pay `import torch`, {torch_import:.2f} s here, and the import of torch._dynamo that every "
             f"torch optimizer triggers on first use, {dynamo:.2f} s)")


def bench_help() -> None:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([str(CHARFORGE), "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    row("cli", "charforge --help (s, median of 5)", statistics.median(times), None, "s", "< 0.3 s",
        statistics.median(times) < 0.3)


# -- the report -----------------------------------------------------------------------------------

def machine(device: str) -> str:
    text = f"{cpu_model()}, {CORES} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB; " \
           f"Python {platform.python_version()}, torch {torch.__version__}"
    if torch.device(device).type == "cuda":
        text += (f"; GPU {torch.cuda.get_device_name()}, driver {_gpu_driver()}, CUDA {torch.version.cuda}, "
                 f"cuDNN {torch.backends.cudnn.version()}")
    return text


def _gpu_driver() -> str:
    """The NVIDIA driver's version, which PyTorch does not report; "unknown" without nvidia-smi."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        out = []
    return out[0] if out else "unknown"


def table() -> str:
    lines = ["| case | charforge | reference | unit | ratio | target | | load |",
             "| --- | ---: | ---: | --- | ---: | --- | --- | ---: |"]
    for r in ROWS:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        note = f" {r['note']}" if r["note"] else ""
        lines.append(f"| {r['case']}{note} | {_num(r['charforge'], r['unit'])} | {_num(r['reference'], r['unit'])} | {r['unit']} | "
                     f"{ratio} | {r['target']} | {_ok(r['ok'])} | {r['load']:.1f} |")
    return "\n".join(lines)


def write_results(args, started: float, load_before) -> None:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = f"""# Benchmark results

Written by `benchmarks/bench.py{' ' + ' '.join(sys.argv[1:]) if sys.argv[1:] else ''}` on {when}, in {
        (time.perf_counter() - started) / 60:.0f} minutes.

Machine: {machine(args.device)}; device {args.device}.
Load average (1, 5, 15 min) before: {', '.join(f'{x:.1f}' for x in load_before)}; after: {
        ', '.join(f'{x:.1f}' for x in os.getloadavg())}. The load column is the 1-minute load when
the row was measured: on this {CORES}-core machine anything above about {CORES - 1} means other work shared the
cores, which slows both sides of a ratio alike but lowers the absolute figures.

"charforge" and "reference" run the same model; the reference is plain PyTorch as a user
writes it (see the docstring of `bench.py`); ratio = charforge / reference (for the
phased-lstm rows: phased-lstm / fused lstm). Training rows time the real `Trainer` from its
first step to its last, validation excluded.

{table()}
"""
    out = Path(args.out)
    out.write_text(text)
    print(f"wrote {out}")


def arguments() -> argparse.ArgumentParser:
    """The command line; apart from :func:`main` so that a test can check what ``gpu.sh`` passes."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--only", default="train,phased,sample,quality,corpus,help",
                        help="comma-separated sections to run")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per training measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per case")
    parser.add_argument("--quality-minutes", type=float, default=QUALITY_MINUTES)
    parser.add_argument("--quality-corpus", default=str(CORPUS), metavar="FILE",
                        help="the text the quality case trains both sides on (default: tiny-shakespeare)")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s, no quality runs")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--quality-together", action="store_true",
                        help="train the plain quality loop while charforge's run trains, not after it: "
                             "for a GPU, where the two share the device and the case takes half the time")
    return parser


def main() -> None:
    args = arguments().parse_args()
    if args.quick:
        args.seconds, args.rounds = 2.0, 1
        args.only = ",".join(s for s in args.only.split(",") if s != "quality")
    if not CORPUS.is_file():
        sys.exit(f"bench: {CORPUS} is missing (clone with shared/ beside the repository)")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench: --device cuda, but PyTorch sees no CUDA GPU")
    os.environ.setdefault("CHARFORGE_CORPUS_DIR", str(CORPUS.parent))
    started, load_before = time.perf_counter(), os.getloadavg()
    sections = args.only.split(",")
    print(machine(args.device))
    text = CORPUS.read_text()
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    with tempfile.TemporaryDirectory(prefix="charforge-bench-") as tmp:
        runs = Path(tmp)
        os.environ["CHARFORGE_CACHE"] = str(runs / "cache")
        if "train" in sections:
            bench_train(args, runs, ids)
        if "phased" in sections:
            bench_phased(args, runs)
        if "sample" in sections:
            bench_sample(args, vocab)
        if "quality" in sections:
            bench_quality(args, runs, ids)
        if "corpus" in sections:
            bench_corpus(args, runs)
        if "help" in sections:
            bench_help()
    print()
    print(table())
    if not args.no_write:
        write_results(args, started, load_before)


if __name__ == "__main__":
    main()
