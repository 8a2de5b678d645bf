#!/usr/bin/env bash
# Check charforge's terminal UI as a person would: in a real terminal (tmux), against a real
# tiny training run. Keys go in with send-keys; what the screen shows comes back with
# capture-pane. Prints each check, the UI lag the app measured, and exits non-zero on a failure.
#
#   scripts/tmux_check.sh            (from the repository root, with charforge installed)
#   KEEP=1 scripts/tmux_check.sh     keep the work folder and the tmux session for a look
set -euo pipefail

CHARFORGE=${CHARFORGE:-charforge}
if ! command -v tmux >/dev/null; then
  apt-get update -qq && apt-get install -y -qq tmux >/dev/null
fi
WORK=$(mktemp -d /tmp/charforge-tmux.XXXXXX)
SESSION=charforge-check-$$
export CHARFORGE_CACHE="$WORK/cache"
cleanup() {
  if [ -z "${KEEP:-}" ]; then
    tmux kill-session -t "$SESSION" 2>/dev/null || true
    [ -n "${BG:-}" ] && kill "$BG" 2>/dev/null || true
    rm -rf "$WORK"
  else
    echo "kept $WORK and tmux session $SESSION"
  fi
}
trap cleanup EXIT

screen() { tmux capture-pane -p -t "$SESSION"; }
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; echo "---- screen ----"; screen || true; exit 1; }
# wait_for TEXT [SECONDS]: until the screen shows TEXT
wait_for() {
  local text=$1 limit=${2:-60} i
  for ((i = 0; i < limit * 10; i++)); do
    if screen | grep -qF -- "$text"; then return 0; fi
    sleep 0.1
  done
  fail "waited ${limit}s for: $text"
}
run_in_tmux() {  # run_in_tmux COMMAND...: a fresh 120x36 terminal running COMMAND, then a shell
  tmux kill-session -t "$SESSION" 2>/dev/null || true
  tmux new-session -d -s "$SESSION" -x 120 -y 36 -c "$WORK" \
    "env CHARFORGE_TUI_LAG_LOG=$WORK/lag.json $*; echo EXITED \$?; sleep 600"
}

python3 - "$WORK/corpus.txt" <<'PY'
import random, sys
rng = random.Random(0)
words = "the cat sat on a mat and the dog ran to the fox in the fog".split()
open(sys.argv[1], "w").write("\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(2000)))
PY
TRAIN=(corpus.txt --hidden-size 64 --batch-size 16 --seq-len 32 --minutes 0.4 --eval-every 200
       --sample-length 60 --device cpu --name live)

echo "== charforge train --tui: a real run, 24 s of training"
run_in_tmux "$CHARFORGE" train "${TRAIN[@]}" --tui
wait_for "· training" 90
wait_for "chars/s"
screen | grep -q "loss (nats/char)" && pass "training screen: plot, figures, progress" || fail "no plot title"
for i in $(seq 9); do tmux send-keys -t "$SESSION" b; sleep 0.3; done  # odd: ends in bits
wait_for "loss (bits/char)" 5 && pass "b switches the plot to bits per char"
tmux send-keys -t "$SESSION" p
wait_for "paused (saved)" 30 && pass "p pauses: stops after the step and saves"
wait_for "p Resume" 5
grep -q '"reason": "interrupted"' "$WORK/runs/live/metrics.jsonl" && pass "the pause saved a checkpoint" || fail "no save"
sleep 2
tmux send-keys -t "$SESSION" p
wait_for "resuming from the checkpoint" 5
wait_for "· training" 90 && pass "p resumes from the checkpoint"
for i in $(seq 20); do tmux send-keys -t "$SESSION" b; sleep 0.4; done  # keys to time while it trains
wait_for "ended: budget spent" 120 && pass "the run ends at its budget"
python3 - "$WORK/runs/live/metrics.jsonl" <<'PY' || fail "the pause counted as training time"
import json, sys
end = [json.loads(l) for l in open(sys.argv[1]) if '"end"' in l][-1]
assert end["elapsed"] < 24 * 1.1, end["elapsed"]
print(f"ok   the paused time did not count against the 24 s budget (elapsed {end['elapsed']:.1f} s)")
PY
tmux send-keys -t "$SESSION" q
wait_for "EXITED 0" 20
screen | grep -q "done at step" && pass "q quits with a hint for what next" || fail "no goodbye"
LAG_TRAIN=$(cat "$WORK/lag.json")

echo "== charforge watch: a finished run shows its history; sample now; the sampling screen"
run_in_tmux "$CHARFORGE" watch runs/live
wait_for "ended: budget spent" 30
wait_for "validation" 5 && pass "watch shows a finished run's plot, figures and samples"
tmux send-keys -t "$SESSION" n
wait_for "sample now · latest · step" 60 && pass "n samples from the latest checkpoint"
tmux send-keys -t "$SESSION" i
wait_for "temperature 1.0" 30
wait_for "latest · step" 30 && pass "i opens the sampler on the run's latest checkpoint"
tmux send-keys -t "$SESSION" Up Up
wait_for "temperature 1.2" 5 && pass "up raises the temperature"
tmux send-keys -t "$SESSION" "the cat" Enter
wait_for "300 chars ─" 30 && pass "a prompt's continuation streams in and is labelled"
screen | grep -q "T 1.2 · top-k off" && pass "the sample is labelled with its settings" || fail "no label"
tmux send-keys -t "$SESSION" C-s
wait_for "saved" 5
ls "$WORK/runs/live/samples/sample-001.txt" >/dev/null && pass "ctrl+s saves the sample" || fail "not saved"
tmux send-keys -t "$SESSION" Escape
wait_for "ended: budget spent" 5 && pass "escape goes back to the training screen"
tmux send-keys -t "$SESSION" q
wait_for "EXITED 0" 10

echo "== charforge watch: attach to a run going on in another terminal, quit, the run goes on"
(cd "$WORK" && "$CHARFORGE" train corpus.txt --hidden-size 64 --minutes 0.25 --eval-every 200 \
   --device cpu --name other --quiet) &
BG=$!
for ((i = 0; i < 900; i++)); do [ -s "$WORK/runs/other/metrics.jsonl" ] && break; sleep 0.1; done
run_in_tmux "$CHARFORGE" watch runs/other
wait_for "· training" 90 && pass "watch follows a live run"
screen | grep -q "p Pause" && fail "an attached run offers pause" || pass "an attached run is read-only"
tmux send-keys -t "$SESSION" q
wait_for "EXITED 0" 10
kill -0 "$BG" 2>/dev/null && pass "quitting the watcher leaves the run going" || fail "the run stopped"
wait "$BG" && BG= && pass "the attached run finished on its own"

echo "== UI lag measured in the real terminal while training ran (ms)"
echo "$LAG_TRAIN"
python3 - <<PY
import json
lag = json.loads('''$LAG_TRAIN''')["key_to_screen_ms"]
assert lag["n"] > 0 and lag["p50"] < 50, lag
print(f"ok   key to screen: median {lag['p50']} ms, p95 {lag['p95']} ms over {lag['n']} keys")
PY
echo "all checks passed"
