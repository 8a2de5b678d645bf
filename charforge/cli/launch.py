"""``charforge train --nproc N``: the same command under ``torchrun`` on this machine, nothing of our own."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

from charforge.errors import CharforgeError
from charforge.threads import usable_cores

_LAUNCHER_LOG = re.compile(r"^[WIEF]\d{4} \d\d:\d\d")  # torchrun's own log lines (W1201 17:45:00.123 ...)


def torchrun(nproc: int) -> int:
    """Run this ``charforge train`` command again in ``nproc`` processes under PyTorch's launcher
    (standalone: one machine, a free port); returns its exit status. The launcher's own report of a
    failed process is left out: the failing rank has said what went wrong, in one line."""
    args = _without_nproc(sys.argv[1:])
    if len(args) == len(sys.argv[1:]):  # not this process's command line (click called from Python)
        raise CharforgeError("--nproc starts the command line it is on again under torchrun; from Python, "
                             "run your script under torchrun instead.")
    env = {"OMP_NUM_THREADS": str(max(1, usable_cores() // nproc)), **os.environ}  # torchrun warns when unset
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "charforge", *args]
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, errors="replace")
    signalled = []

    def forward(signum, frame):  # a SIGTERM (a scheduler, docker stop) goes to torchrun, which tells the ranks
        signalled.append(signum)
        proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    report = failed = False  # torchrun's summary of a failure: a traceback and a table, after our rank's line
    while True:
        try:
            for line in proc.stderr:
                failed = failed or "failed (exitcode" in line
                report = report or line.startswith(("Traceback", "torch.distributed.elastic", "=====")) \
                    or "ChildFailedError" in line
                if not report and not _LAUNCHER_LOG.match(line):
                    sys.stderr.write(line)
            status = proc.wait()
            break
        except KeyboardInterrupt:  # Ctrl-C reached torchrun too, which tells the ranks: they save and stop
            signalled.append(signal.SIGINT)
    # torchrun reports its own signal as a failure; the ranks that saved and stopped did not fail
    return 0 if signalled and not failed else status


def _without_nproc(args: list[str]) -> list[str]:
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out
