"""Interrupt recording runs with Ctrl-C and check that every trace left behind is readable.

    python bench/ctrl_c_trials.py [--trials 20] [--out bench/ctrl_c_trials.json]

Each trial starts ``xentdbg trace --out`` or ``xentdbg compare --save-traces`` (alternating)
on ``tests/setups/jax_small.py:slow`` (0.1 s per step), waits until a worker has started a
step drawn from 2..12 (the setup counts its steps in ``XENTDBG_TEST_PROGRESS``), waits a
further draw from 0..0.1 s so the interrupt lands anywhere in the step cycle, sends SIGINT
to the coordinator, and then checks:

* the exit code is 130 and stderr has no traceback;
* no worker of the run is left after 20 s;
* every trace file opens with :func:`xentdbg.load_trace`, and all its complete steps read.

An interrupt lands at a different point of the writer's step each time (the draws are
seeded, the timing is not), which is what the check is for. Prints one line per trial and a
summary, writes JSON, and exits 1 if any trial failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SLOW = f"{ROOT / 'tests' / 'setups' / 'jax_small.py'}:slow"
SMALL = ["--subset", "64", "--batch-size", "16", "--steps", "500"]


def workers_of(marker: str) -> list[int]:
    """Live replay workers whose environment holds ``marker`` (a zombie has no command line;
    also the tests' helper, ``tests/conftest.py``): started fresh (``xentdbg.replay.worker``
    in the command line) or forked by a fork server (named ``xentdbg-worker``,
    :data:`xentdbg.replay.forkserver.WORKER_NAME`; its command line is its server's)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
                env = (entry / "environ").read_bytes()
                name = (entry / "comm").read_bytes().strip()
            except OSError:
                continue
            if (b"xentdbg.replay.worker" in cmd or name == b"xentdbg-worker") and cmd and marker.encode() in env:
                pids.append(int(entry.name))
    return pids


def _steps_started(progress: Path) -> int:
    counts = [len(f.read_text().splitlines()) for f in progress.iterdir()]
    return max(counts, default=0)


def trial(index: int, command: str, at_step: int, jitter: float, work: Path) -> dict:
    from xentdbg import load_trace

    marker = f"ctrl-c-trial-{os.getpid()}-{index}"
    progress = work / "progress"
    progress.mkdir()
    if command == "trace":
        args, traces = ["trace", SLOW, "--out", str(work / "t.h5"), *SMALL], [work / "t.h5"]
    else:
        args, traces = (["compare", SLOW, SLOW, *SMALL, "--save-traces", str(work / "traces")],
                        [work / "traces" / "a.h5", work / "traces" / "b.h5"])
    env = {**os.environ, "XENTDBG_TEST_MARKER": marker, "XENTDBG_TEST_PROGRESS": str(progress)}
    proc = subprocess.Popen([sys.executable, "-m", "xentdbg", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while proc.poll() is None and _steps_started(progress) <= at_step and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(jitter)  # somewhere inside the 0.1 s step cycle, the trace write included
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    deadline = time.monotonic() + 20
    while workers_of(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    row = {"trial": index, "command": command, "interrupted_at_step": at_step, "exit": proc.returncode,
           "traceback": "Traceback" in err, "workers_left": len(workers_of(marker)), "traces": []}
    for path in traces:
        entry: dict = {"file": path.name}
        try:
            with load_trace(path) as t:
                for _ in t.records(load=True):
                    pass
                entry["steps"] = len(t.steps)
                entry["readable"] = True
        except Exception as e:  # noqa: BLE001 - the point is to record any failure
            entry["readable"] = False
            entry["error"] = f"{type(e).__name__}: {e}"
        row["traces"].append(entry)
    row["ok"] = (row["exit"] == 130 and not row["traceback"] and row["workers_left"] == 0
                 and all(t["readable"] for t in row["traces"]))
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rows = []
    for i in range(args.trials):
        command = ("trace", "compare")[i % 2]
        with tempfile.TemporaryDirectory(prefix="xentdbg-ctrl-c-") as tmp:
            row = trial(i, command, rng.randint(2, 12), rng.uniform(0.0, 0.1), Path(tmp))
        rows.append(row)
        steps = ", ".join(f"{t['file']}: {t.get('steps', t.get('error'))}" for t in row["traces"])
        print(f"{i:2d} {command:8s} SIGINT after step {row['interrupted_at_step']:2d}: exit {row['exit']}, "
              f"workers left {row['workers_left']}, {steps}  {'ok' if row['ok'] else 'FAILED'}", flush=True)
    readable = sum(t["readable"] for r in rows for t in r["traces"])
    total = sum(len(r["traces"]) for r in rows)
    ok = sum(r["ok"] for r in rows)
    print(f"{ok}/{len(rows)} trials ok; {readable}/{total} traces readable")
    if args.out:
        args.out.write_text(json.dumps({"trials": rows, "ok": ok, "readable": readable, "traces": total}, indent=1))
    return 0 if ok == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
