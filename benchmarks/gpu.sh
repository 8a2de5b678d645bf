#!/usr/bin/env bash
# benchmarks/gpu.sh: the benchmark's table (benchmarks/bench.py) on a CUDA GPU, in under 5 minutes.
#
# It needs, and checks first, stopping with one line at the first that is missing:
#   - the repository's venv: .venv/bin/python (or the python named by $PYTHON), with charforge
#     installed in it (its `charforge` command beside that python) and a CUDA build of torch;
#   - the corpus beside the repository: ../shared/corpora/tinyshakespeare.txt;
#   - a CUDA GPU with its driver: nvidia-smi lists it (and reports the driver's version for the
#     table), and that torch sees it.
# It needs no network: nothing is downloaded.
#
# Usage: bash benchmarks/gpu.sh [--quick] [--out FILE] [--dry-run]
#   --out FILE  where the table goes; default benchmarks/RESULTS-gpu.md (bench.py rewrites the file
#               it writes whole, so the GPU table keeps its own beside the CPU table's RESULTS.md)
#   --quick     1 round of 2 s per training case, short sampling runs, no quality runs: a minute or two
#   --dry-run   make the checks, say which one a real run would stop at, print the command, run nothing
#   -h, --help  this text
# The table's header names the GPU, its driver, the CUDA and cuDNN versions, torch and the command.
#
# Time budget, about 4.7 of the 5 minutes (the table's header records what it took):
#   - training: each built-in cell (rnn, lstm, gru) at 2x128 and 1x512, and phased-lstm next to lstm
#     at both sizes, through the real Trainer against a plain cuDNN loop: 2 alternating rounds of 2 s
#     a side (--seconds 2 --rounds 2), about 11 s a case with set-up: 8 cases, 90 s;
#   - sampling at batch 1 and 256, against plain nn.LSTM / nn.LSTMCell step loops: about 15 s;
#   - quality: validation loss after 2.5 minutes of charforge's default training, next to the plain
#     1x512 loop's 2.5 minutes; the two train AT THE SAME TIME on the one GPU (--quality-together),
#     from the moment charforge's run starts training: about 165 s with start-up and validation;
#   - CUDA start-up: about 10 s. The corpus-preparation and --help rows measure only the CPU, which
#     the CPU table already covers: left out.
# Why together: back to back, the two 2.5-minute runs alone take the whole 5 minutes, and a shorter
# budget would not answer "quality after 2.5 minutes". Together, both sides get the same wall-clock
# and the same share of the GPU; these small models leave the GPU idle between their kernels much
# of the time, so sharing it should cost each side little, and costs both alike. The quality row
# says it was shared. The same case one after the other (5 minutes on its own):
#   .venv/bin/python benchmarks/bench.py --device cuda --only quality --out FILE
set -u -o pipefail

usage() { sed -n '2,/^set -u/{/^set -u/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
fail() { echo "gpu.sh: $1" >&2; exit 1; }
# A word as a shell reads it back, left bare where it can be (printf %q would escape every comma).
quote() { if [[ $1 =~ ^[A-Za-z0-9_./,:=+-]+$ ]]; then echo "$1"; else printf '%q' "$1"; fi; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="$REPO/benchmarks/RESULTS-gpu.md"
quick=0
dry=0
while [ $# -gt 0 ]; do
    case $1 in
        -h|--help) usage; exit 0 ;;
        --quick) quick=1 ;;
        --dry-run) dry=1 ;;
        --out) [ $# -ge 2 ] && [ -n "$2" ] || { echo "gpu.sh: --out needs a file name" >&2; exit 2; }
               out=$2; shift ;;
        --out=?*) out=${1#--out=} ;;
        *) echo "gpu.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
case $out in /*) ;; *) out="$PWD/$out" ;; esac  # bench.py runs from the repository's root
[ -d "$(dirname "$out")" ] || { echo "gpu.sh: --out $out: its folder does not exist" >&2; exit 2; }

PY=${PYTHON:-$REPO/.venv/bin/python}
CORPUS="$(dirname "$REPO")/shared/corpora/tinyshakespeare.txt"

# One check at a time, cheapest first: its complaint, or nothing when it passes.
check() {
    local listed seen version cuda available
    if [ ! -x "$PY" ]; then
        echo "no python at $PY: create the repository's venv (with a CUDA build of torch) or set PYTHON"
    elif [ ! -x "$(dirname "$PY")/charforge" ]; then
        echo "charforge is not installed beside $PY (no charforge command there)"
    elif [ ! -f "$CORPUS" ]; then
        echo "the corpus is missing: $CORPUS (shared/ must sit beside the repository)"
    elif ! command -v nvidia-smi >/dev/null; then
        echo "no CUDA GPU here: nvidia-smi is not found (this needs an NVIDIA GPU and its driver)"
    elif ! listed=$(nvidia-smi -L 2>&1); then
        echo "nvidia-smi lists no GPU: $(head -n 1 <<<"$listed")"
    elif ! seen=$("$PY" -c 'import torch
print(torch.__version__, torch.version.cuda, int(torch.cuda.is_available()))' 2>/dev/null); then
        echo "$PY cannot import torch"
    else
        read -r version cuda available <<<"$seen"
        if [ "$cuda" = None ]; then
            echo "torch $version in $PY is a CPU-only build: install a CUDA build of torch"
        elif [ "$available" != 1 ]; then
            echo "torch $version (CUDA $cuda) sees no CUDA GPU, though nvidia-smi lists one" \
                 "(check CUDA_VISIBLE_DEVICES, and that the driver supports CUDA $cuda)"
        fi
    fi
}

cmd=("$PY" benchmarks/bench.py --device cuda --only train,phased,sample,quality --seconds 2 --rounds 2
     --quality-together --out "$out")
[ $quick = 1 ] && cmd+=(--quick)

problem=$(check)
if [ $dry = 1 ]; then
    if [ -n "$problem" ]; then echo "gpu.sh: dry run: a real run would stop here: $problem" >&2
    else echo "gpu.sh: dry run: every check passed" >&2; fi
    line="cd $(quote "$REPO") &&"
    for word in "${cmd[@]}"; do line+=" $(quote "$word")"; done
    echo "$line"
    exit 0
fi
[ -z "$problem" ] || fail "$problem"

cd "$REPO" || fail "cannot enter $REPO"
"${cmd[@]}"
status=$?
[ $status = 0 ] || fail "bench.py failed (exit $status) after $SECONDS s"
echo "gpu.sh: the GPU table is in $out ($SECONDS s)"
