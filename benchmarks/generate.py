"""Generation throughput: chars/s of `charforge generate` at batch 1 and batch 256 (1 x 512 LSTM).

    python benchmarks/generate.py                 # CPU, 1 thread and all cores
    python benchmarks/generate.py --device cuda   # on a GPU

The model has random weights (trained for one step, so the checkpoint is a real one written by
the Trainer and read back by ``charforge.load``); speed does not depend on what it learned.
Next to charforge's batched engine the table shows, on the same weights, the plain loop a user
writes by hand (``nn.LSTM`` called one step at a time, ``torch.multinomial``) for reference.
Wall-clock chars/s is the figure that counts; chars per CPU-second of this process is printed
beside it because, on a machine shared with other jobs, it is the steadier of the two (with one
thread; with several it counts every thread's time).
"""

from __future__ import annotations

import argparse
import os
import platform
import string
import sys
import tempfile
import time
from pathlib import Path

import torch


def make_model(root: Path, device: str):
    import charforge

    corpus = root / "corpus.txt"
    text = (string.printable * 40)
    corpus.write_text(text, encoding="utf-8")
    result = charforge.train(corpus, runs_dir=root / "runs", name="bench", cell="lstm", hidden_size=512,
                             layers=1, embedding_dim=0, steps=1, batch_size=4, seq_len=32, val_fraction=0.0,
                             sample_length=1,
                             device="cpu", quiet=True)
    return charforge.load(result.run_dir, device=device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, chars: int, device: torch.device) -> tuple[float, float]:
    """(chars per wall-clock second, chars per CPU-second of this process) of one call."""
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return chars / (time.perf_counter() - wall), chars / max(time.process_time() - cpu, 1e-9)


def time_charforge(model, batch: int, length: int, repeats: int) -> tuple[float, float]:
    """Best chars/s (wall, CPU) of Model.generate for ``batch`` samples of ``length`` characters."""
    prompts = [f"prompt {i}: " for i in range(batch)]
    model.generate(prompts, length=min(length, 64), seed=0, batch_size=batch)  # warm-up (and compile)
    runs = [timed(lambda: model.generate(prompts, length=length, seed=r, batch_size=batch), batch * length,
                  model.device) for r in range(repeats)]
    return max(w for w, _ in runs), max(c for _, c in runs)


@torch.inference_mode()
def time_plain(model, batch: int, length: int, repeats: int) -> tuple[float, float]:
    """The hand-written loop: nn.LSTM one step at a time, multinomial, on the same weights."""
    dev, vocab_size = model.device, len(model.vocab)
    cell = model.model.layers[0]
    lstm = torch.nn.LSTM(vocab_size, cell.hidden_size, batch_first=True).to(dev)
    lstm.load_state_dict(cell.rnn.state_dict())
    head = model.model.head

    def loop(n: int, seed: int) -> None:
        gen = torch.Generator(dev).manual_seed(seed)
        x = torch.zeros(batch, dtype=torch.long, device=dev)
        h = None
        for _ in range(n):
            out, h = lstm(torch.nn.functional.one_hot(x, vocab_size).float().unsqueeze(1), h)
            x = torch.multinomial(head(out[:, 0]).softmax(-1), 1, generator=gen).squeeze(1)

    loop(min(length, 64), 0)
    runs = [timed(lambda: loop(length, r), batch * length, dev) for r in range(repeats)]
    return max(w for w, _ in runs), max(c for _, c in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", default=None, help="comma list of CPU thread counts [1,all cores]")
    parser.add_argument("--length1", type=int, default=2000, help="characters per run at batch 1")
    parser.add_argument("--length256", type=int, default=200, help="characters per sample at batch 256")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--no-plain", action="store_true", help="skip the hand-written reference loop")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    threads = [int(t) for t in args.threads.split(",")] if args.threads else sorted({1, cores})
    if args.device != "cpu":
        threads = threads[-1:]
    with tempfile.TemporaryDirectory() as tmp:
        model = make_model(Path(tmp), args.device)
        print(f"# charforge generate throughput, 1 x 512 LSTM, {len(model.vocab)} characters")
        print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()} {platform.processor() or ''}, "
              f"{cores} cores, torch {torch.__version__}, device {model.device}"
              + (f" ({torch.cuda.get_device_name(model.device)})" if model.device.type == "cuda" else ""))
        try:
            load = os.getloadavg()[0]
            print(f"# load average at start: {load:.2f}")
        except OSError:
            pass
        print()
        print("| threads | engine | batch 1 chars/s | batch 256 chars/s | batch 256 / batch 1 "
              "| per CPU-second: batch 1 | batch 256 | ratio |")
        print("|---|---|---|---|---|---|---|---|")
        for n in threads:
            torch.set_num_threads(n)
            rows = [("charforge generate", time_charforge)]
            if not args.no_plain:
                rows.append(("plain nn.LSTM step loop", time_plain))
            for name, fn in rows:
                (one, one_cpu) = fn(model, 1, args.length1, args.repeats)
                (many, many_cpu) = fn(model, 256, args.length256, args.repeats)
                print(f"| {n} | {name} | {one:,.0f} | {many:,.0f} | {many / one:.1f}x "
                      f"| {one_cpu:,.0f} | {many_cpu:,.0f} | {many_cpu / one_cpu:.1f}x |")
                sys.stdout.flush()


if __name__ == "__main__":
    main()
