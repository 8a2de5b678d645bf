"""What MKL's strict reproducibility (``MKL_CBWR=AUTO,STRICT``, which charforge sets) costs in training.

    .venv/bin/python benchmarks/exactness.py               # 3 rounds of 150 steps per setting
    .venv/bin/python benchmarks/exactness.py --rounds 5 --steps 300

Each round starts a fresh process per setting, in turn (so a change in the machine's load hits
both alike), that trains charforge's default model shape (embedding 64, one LSTM layer of 256,
batch 64 x 64 characters, Adam) with a plain PyTorch loop on fixed random text. The table gives
steps per second, their ratio, and whether the losses of every round were bit-identical to the
first round's: the reproducibility the setting buys. Prints the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from machine import cpu_model

WORKER = r"""
import json, sys, time, torch
steps = int(sys.argv[1])
torch.manual_seed(0)
vocab, batch, seq = 65, 64, 64
text = torch.randint(vocab, (batch, steps * seq + 1))
embed, lstm, head = torch.nn.Embedding(vocab, 64), torch.nn.LSTM(64, 256, batch_first=True), torch.nn.Linear(256, vocab)
params = [*embed.parameters(), *lstm.parameters(), *head.parameters()]
opt = torch.optim.Adam(params, lr=5e-3)
state, losses = None, []
for i in range(steps):
    if i == 10:
        started = time.perf_counter()  # after warm-up
    x, y = text[:, i * seq:(i + 1) * seq], text[:, i * seq + 1:(i + 1) * seq + 1]
    out, state = lstm(embed(x), state)
    loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, vocab), y.reshape(-1))
    opt.zero_grad()
    loss.backward()
    opt.step()
    state = tuple(s.detach() for s in state)
    losses.append(loss.item())
print(json.dumps({"steps_per_s": (steps - 10) / (time.perf_counter() - started), "losses": losses}))
"""

SETTINGS = {"MKL_CBWR unset": None, "MKL_CBWR=AUTO,STRICT": "AUTO,STRICT"}


def run(steps: int, value: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    if value is not None:
        env["MKL_CBWR"] = value
    out = subprocess.run([sys.executable, "-c", WORKER, str(steps)], env=env, check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} before the runs")
    results: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name, value in SETTINGS.items():
            results[name].append(run(args.steps, value))
    base = statistics.median(r["steps_per_s"] for r in results["MKL_CBWR unset"])
    print(f"load {os.getloadavg()[0]:.2f} after the runs")
    print("| setting | steps/s (median) | min-max | vs unset | losses identical across rounds |")
    print("|---|---|---|---|---|")
    for name, rounds in results.items():
        rates = [r["steps_per_s"] for r in rounds]
        same = all(r["losses"] == rounds[0]["losses"] for r in rounds)
        print(f"| {name} | {statistics.median(rates):.2f} | {min(rates):.2f}-{max(rates):.2f} | "
              f"{statistics.median(rates) / base:.3f} | {'yes' if same else 'no'} |")


if __name__ == "__main__":
    main()
