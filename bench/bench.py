"""xentdbg benchmark: replay cost against the plain trainings, memory, trace throughput.

    python bench/bench.py [--runs 3] [--out bench/results.json]
                          [--only crossfeed|long|distributed|baseline|sizes|memory|trace]

``--only crossfeed`` runs the cross-feed and float64-oracle entries alone, ``--only long``
the two 500-step replays, ``--only distributed`` the one-device against 4-replica pair,
``--only memory`` the compare's peak RSS at 50 and at 500 steps (medians of ``--runs``),
``--only trace`` the trace write and diff throughput on 1 GB, and merges them into an
existing results file.

``--only sizes`` measures the same way at realistic sizes (``bench/setups/sizes.py``: a
1.2M-parameter convnet at batch 64 for 300 steps, a 10M-parameter MLP for 100 steps;
``model.fit`` against the same model's custom loop), with peak memory, and fits the
per-step overhead against the parameter count (with the case-1 model's from
``--only baseline``).

``--only baseline`` measures ``xentdbg compare`` against what a user would otherwise run:
their own two scripts, which import no xentdbg (``bench/plain/``; each trains bitwise what
its setup trains, ``tests/test_bench_plain.py``). In each round, side by side: the two
scripts back to back, the two scripts started at once (on 2 cores, the physical limit of
two trainings), and the compare; medians over the rounds, every round kept. Entries:
case 1; the 500-step clean pair with full capture and with ``--fingerprint``; the
one-device against 4-replica pair. The other entries below time the plain trainings
through xentdbg's own adapters (``bench/plain.py``), which isolates the capture's cost.

Whole-process wall times (imports included, like /usr/bin/time), medians of --runs runs:
1. case 1 (1000 samples, full batch, 10 steps): `xentdbg compare` vs the two setups
   trained plainly one after the other (bench/plain.py: the same model.fit / JAX loop);
2. the case-1 model at batch 100 for 500 steps: the same ratio, and the per-step overhead
   split into capture (in-worker, measured in-process by bench/_probe.py), transfer
   (the step records from one process to another, as a replay moves them: shared-memory
   ring plus pipe) and comparison (compare_step, as a replay runs it after the first
   divergent step);
   and the same for ``--fingerprint`` on that pair (it stops at step 0) and on a pair that
   agrees for all 500 steps (its worst case), with full capture on that pair for reference;
   and the cost of the cross-feed (the re-run of a flagged step on both sides from the
   other side's values): a JAX pair that drifts apart by float32 rounding, 200 steps,
   with the default rtol (nothing flagged, no cross-feed) and with rtol 1e-5 (the drift
   flagged and cross-fed at dozens of steps); and the cost of the float64 oracle (both
   sides re-run in float64 at a step that introduced a small difference): a JAX pair
   with label smoothing on one side (introduced at step 0, checked in float64) with and
   without --no-float64, and the 500-step case-1 pair (JAX vs Keras fit), whose one
   borderline step needs it;
3. peak RSS summed over the coordinator and its workers, at 50 and at 500 steps;
4. trace write and diff throughput on a trace of at least 1 GB;
5. the one-device against 4-replica pair of examples/distributed (MirroredStrategy on 4
   logical CPU devices, batch 64, 200 steps): `xentdbg compare` against the two setups
   trained plainly one after the other.
Prints a table and writes JSON so that commits can be compared. A full run keeps the
``--only baseline`` and ``--only sizes`` entries of an existing results file, which it does
not measure; each row of the table says when its entry was measured
(:func:`measured_on`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
A, B = "examples/case1_bce/jax_stable.py", "examples/case1_bce/keras_fit.py"
# A pair that agrees for 500 steps (exact BCE on logits in JAX vs Keras fit): --fingerprint's
# first pass then runs to the end, which is its worst case. On A/B it stops at step 0.
CLEAN_A = "examples/case1_bce/jax_logits.py"
CASE1 = {"steps": 10, "subset": 1000, "batch": 1000}
LONG = {"steps": 500, "subset": 1000, "batch": 100}
DIST_A, DIST_B = "examples/distributed/model.py:single", "examples/distributed/model.py:replicas4"
DIST = {"steps": 200, "subset": 1024, "batch": 64}
# Realistic sizes (bench/setups/sizes.py): model.fit against the same model's custom loop.
SIZES_SETUPS = "bench/setups/sizes.py"
SIZES = {"convnet": ({"steps": 300, "subset": 4800, "batch": 64}, 1_199_882),
         "mlp": ({"steps": 100, "subset": 5000, "batch": 100}, 10_020_874)}


def _tree_rss(pid: int) -> int:
    """RSS in bytes of ``pid`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack.extend(children.get(p, []))
    return total


def run(cmd: list[str]) -> tuple[float, int, int]:
    """Wall seconds, peak summed RSS of the process tree, exit code."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        time.sleep(0.02)
    return time.perf_counter() - start, peak, proc.returncode


def plain(setup: str, p: dict) -> list[str]:
    return [PY, "bench/plain.py", setup, str(p["steps"]), str(p["subset"]), str(p["batch"])]


# The user's own scripts, which import no xentdbg (bench/plain/): the denominator of the
# baseline ratios. Each trains what the setup it stands for trains.
INDEPENDENT = {A: ["bench/plain/jax_loop.py", "stable"], CLEAN_A: ["bench/plain/jax_loop.py", "logits"],
               B: ["bench/plain/keras_fit.py"], DIST_A: ["bench/plain/distributed.py", "single"],
               DIST_B: ["bench/plain/distributed.py", "replicas4"],
               **{f"{SIZES_SETUPS}:{m}_{k}": ["bench/plain/sizes.py", m, k] for m in SIZES for k in ("fit", "loop")}}


def independent(setup: str, p: dict) -> list[str]:
    return [PY, *INDEPENDENT[setup], str(p["steps"]), str(p["subset"]), str(p["batch"])]


def run_together(cmds: list[list[str]]) -> float:
    """Wall seconds of ``cmds`` started at once, until the last one ends."""
    start = time.perf_counter()
    procs = [subprocess.Popen(c, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for c in cmds]
    codes = [proc.wait() for proc in procs]
    assert codes == [0] * len(cmds), f"plain scripts exited {codes}"
    return time.perf_counter() - start


def baseline_case(p: dict, runs: int, extra: tuple[str, ...] = (), a: str = A, b: str = B) -> dict:
    """``xentdbg compare`` against the user's two scripts (bench/plain/), measured side by
    side in each round: the scripts back to back, the scripts at once (on 2 cores the
    physical limit of two trainings), and the compare."""
    seq, together, compare_s = [], [], []
    for _ in range(runs):
        times = [run(independent(s, p)) for s in (a, b)]
        assert all(code == 0 for _, _, code in times), "a plain script failed"
        seq.append(sum(t for t, _, _ in times))
        together.append(run_together([independent(a, p), independent(b, p)]))
        seconds, _, code = run(compare(p, *extra, a=a, b=b))
        assert code in (0, 1), f"compare exited {code}"
        compare_s.append(seconds)
    med = statistics.median
    return {"compare_s": med(compare_s), "scripts_back_to_back_s": med(seq), "scripts_at_once_s": med(together),
            "ratio_back_to_back": med(compare_s) / med(seq), "ratio_at_once": med(compare_s) / med(together),
            "runs": runs, "all_compare_s": compare_s, "all_back_to_back_s": seq, "all_at_once_s": together}


def sizes_case(model: str, runs: int) -> dict:
    """:func:`baseline_case` for one of :data:`SIZES`, with peak memory: the compare's
    process tree (coordinator, workers, fork servers) against the larger of the two
    scripts and against their sum (both trainings' memory, as the compare holds both)."""
    p, params = SIZES[model]
    a, b = f"{SIZES_SETUPS}:{model}_fit", f"{SIZES_SETUPS}:{model}_loop"
    seq, together, compare_s, script_peaks, compare_peaks = [], [], [], [], []
    for _ in range(runs):
        times = [run(independent(s, p)) for s in (a, b)]
        assert all(code == 0 for _, _, code in times), "a plain script failed"
        seq.append(sum(t for t, _, _ in times))
        script_peaks.append([peak for _, peak, _ in times])
        together.append(run_together([independent(a, p), independent(b, p)]))
        seconds, peak, code = run(compare(p, a=a, b=b))
        assert code in (0, 1), f"compare exited {code}"
        compare_s.append(seconds)
        compare_peaks.append(peak)
    med = statistics.median
    scripts_sum = med([sum(pk) for pk in script_peaks]) / 2**20
    return {"params": params, **p, "compare_s": med(compare_s), "scripts_back_to_back_s": med(seq),
            "scripts_at_once_s": med(together), "ratio_back_to_back": med(compare_s) / med(seq),
            "ratio_at_once": med(compare_s) / med(together),
            "overhead_ms_per_step": (med(compare_s) - med(seq)) / p["steps"] * 1e3,
            "compare_peak_rss_mb": med(compare_peaks) / 2**20, "scripts_peak_rss_mb_sum": scripts_sum,
            "rss_ratio_to_sum": med(compare_peaks) / 2**20 / scripts_sum,
            "runs": runs, "all_compare_s": compare_s, "all_back_to_back_s": seq, "all_at_once_s": together,
            "all_compare_peak_rss_mb": [x / 2**20 for x in compare_peaks],
            "all_script_peak_rss_mb": [[x / 2**20 for x in pk] for pk in script_peaks]}


def overhead_fit(points: list[tuple[int, float]]) -> dict:
    """Least squares ``overhead ms per step = a + b * millions of parameters``."""
    import numpy as np

    x = np.array([p / 1e6 for p, _ in points])
    y = np.array([ms for _, ms in points])
    b, a = np.polyfit(x, y, 1)
    return {"ms_per_step_at_0": float(a), "ms_per_step_per_million_params": float(b),
            "points": [{"params": p, "overhead_ms_per_step": ms} for p, ms in points]}


def versions() -> dict:
    from importlib import metadata

    out = {}
    for name in ("tensorflow", "keras", "jax", "jaxlib", "optax", "numpy", "h5py"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def compare(p: dict, *extra: str, a: str = A, b: str = B) -> list[str]:
    return [PY, "-m", "xentdbg", "compare", a, b, "--steps", str(p["steps"]), "--subset", str(p["subset"]),
            "--batch-size", str(p["batch"]), *extra]


def ratio_case(p: dict, runs: int, extra: tuple[str, ...] = (), a: str = A, b: str = B) -> dict:
    plain_s, compare_s, peaks = [], [], []
    for _ in range(runs):
        plain_s.append(run(plain(a, p))[0] + run(plain(b, p))[0])
        seconds, peak, code = run(compare(p, *extra, a=a, b=b))
        assert code in (0, 1), f"compare exited {code}"
        compare_s.append(seconds)
        peaks.append(peak)
    med_plain, med_compare = statistics.median(plain_s), statistics.median(compare_s)
    return {"plain_s": med_plain, "compare_s": med_compare, "ratio": med_compare / med_plain,
            "peak_rss_mb": statistics.median(peaks) / 2**20, "runs": runs,
            "all_plain_s": plain_s, "all_compare_s": compare_s}


def memory_case(runs: int) -> dict:
    """Peak RSS of the compare's process tree at 50 and at 500 steps of the long pair (the
    same model and batch): what the coordinator and the workers hold must not grow with
    the run's length."""
    peaks: dict[int, list[float]] = {}
    for steps in (50, LONG["steps"]):
        peaks[steps] = []
        for _ in range(runs):
            _, peak, code = run(compare({**LONG, "steps": steps}))
            assert code in (0, 1), f"compare exited {code}"
            peaks[steps].append(peak / 2**20)
    short, long = statistics.median(peaks[50]), statistics.median(peaks[LONG["steps"]])
    return {"peak_rss_mb_50": short, "peak_rss_mb_500": long, "growth": long / short - 1, "runs": runs,
            "all_peak_rss_mb_50": peaks[50], "all_peak_rss_mb_500": peaks[LONG["steps"]]}


DRIFT = "tests/setups/jax_verdicts.py"


def crossfeed_cost(runs: int, tmp: Path) -> dict:
    """The drift pair with and without flagged steps: the difference is the cross-feed."""
    out: dict = {}
    for key, extra in (("unflagged", ()), ("flagged", ("--rtol", "1e-5"))):
        seconds, flagged = [], 0
        for _ in range(runs):
            report = tmp / "crossfeed.json"
            cmd = [PY, "-m", "xentdbg", "compare", f"{DRIFT}:base_fast", f"{DRIFT}:reordered_fast", "--steps", "200",
                   "--subset", "1000", "--batch-size", "100", "--pixels", "unit", *extra, "--json", str(report)]
            s, _, code = run(cmd)
            assert code == 0, f"compare exited {code}"
            seconds.append(s)
            drift = json.loads(report.read_text())["drift"]
            flagged = len(drift["steps"]) if drift else 0
        out[key] = {"compare_s": statistics.median(seconds), "cross_fed_steps": flagged, "all_s": seconds}
    extra_s = out["flagged"]["compare_s"] - out["unflagged"]["compare_s"]
    out["ms_per_cross_fed_step"] = 1000 * extra_s / max(out["flagged"]["cross_fed_steps"], 1)
    return out


def oracle_cost(runs: int, tmp: Path) -> dict:
    """The float64 oracle: the label-smoothing pair (30 steps, introduced at step 0, a small
    difference re-run in float64) with and without it; the 500-step case-1 pair with it."""
    out: dict = {}
    short = ("--steps", "30", "--subset", "1000", "--batch-size", "100", "--pixels", "unit")
    cases = (("smoothed_float64", f"{DRIFT}:base", f"{DRIFT}:smoothed", short, 1),
             ("smoothed_no_float64", f"{DRIFT}:base", f"{DRIFT}:smoothed", (*short, "--no-float64"), 1),
             ("case1_500_steps", CLEAN_A, B, ("--steps", "500", "--subset", "1000", "--batch-size", "100",
                                              "--pixels", "raw", "--task", "binary"), 0))
    for key, a, b, args, expected in cases:
        seconds, checked = [], 0
        for _ in range(runs):
            report = tmp / "oracle.json"
            s, _, code = run([PY, "-m", "xentdbg", "compare", a, b, *args, "--json", str(report)])
            assert code == expected, f"{key}: compare exited {code}"
            seconds.append(s)
            steps = json.loads(report.read_text())["per_step"]
            checked = sum(1 for st in steps if (st.get("crossfeed") or {}).get("float64"))
        out[key] = {"compare_s": statistics.median(seconds), "float64_checks": checked, "all_s": seconds}
    out["float64_extra_s"] = out["smoothed_float64"]["compare_s"] - out["smoothed_no_float64"]["compare_s"]
    return out


def overhead_split(p: dict, tmp: Path) -> dict:
    """Per-step capture, transfer and comparison cost on the long run (milliseconds)."""
    from xentdbg.compare.divergence import Pairing, compare_step
    from xentdbg.compare.metrics import Tolerance
    from xentdbg.compare.params import match_parameters
    from xentdbg.trace import load_trace

    probes = {}
    for side, setup in (("a", A), ("b", B)):
        out = subprocess.run([PY, "bench/_probe.py", setup, str(p["steps"]), str(p["subset"]), str(p["batch"]),
                              str(tmp / f"{side}.h5")], cwd=ROOT, capture_output=True, text=True, check=True)
        probes[side] = json.loads(out.stdout.strip().splitlines()[-1])
    capture_ms = {s: (v["captured_s"] - v["plain_s"]) / p["steps"] * 1000 for s, v in probes.items()}
    train_ms = {s: v["plain_s"] / p["steps"] * 1000 for s, v in probes.items()}
    with load_trace(tmp / "a.h5") as ta, load_trace(tmp / "b.h5") as tb:
        ra, rb = list(ta.records(load=True)), list(tb.records(load=True))
        pairing = Pairing(params=match_parameters(ta.info.params, tb.info.params).params, state=[])
    start = time.perf_counter()
    for x, y in zip(ra, rb):
        compare_step(x, y, pairing, Tolerance(), detail=False)
    compare_ms = (time.perf_counter() - start) / len(ra) * 1000
    nbytes = probes["a"]["record_bytes"] + probes["b"]["record_bytes"]
    transfer_ms = _transfer_seconds(nbytes) * 1000
    return {"train_ms_per_step": train_ms, "capture_ms_per_step": capture_ms, "transfer_ms_per_step": transfer_ms,
            "compare_ms_per_step": compare_ms, "record_bytes_per_step": nbytes}


def _transfer_seconds(nbytes: int, repeats: int = 20) -> float:
    """Seconds to move ``nbytes`` of step records from a child process to this one, as a
    replay does: header through the pipe, arrays through the shared-memory ring where
    there is one (:mod:`xentdbg.replay.ring`), one acknowledgement per record."""
    code = ("import sys, numpy as np; from xentdbg.replay import ring, wire; "
            "n, out, back, shm, repeats = map(int, sys.argv[1:]); a = np.ones(n // 4, np.float32); "
            "w = ring.RingWriter(shm) if shm >= 0 else None\n"
            "for _ in range(repeats): wire.send(out, {'type': 'step'}, [a], ring=w); wire.recv(back)")
    from xentdbg.replay import ring, wire
    from xentdbg.replay.process import _widen

    r, w = os.pipe()
    back_r, back_w = os.pipe()
    _widen(r)
    shm = ring.create("bench")
    reader = ring.RingReader(shm) if shm is not None else None
    fds = (w, back_r) + ((shm,) if shm is not None else ())
    proc = subprocess.Popen([PY, "-c", code, str(nbytes), str(w), str(back_r), str(-1 if shm is None else shm),
                             str(repeats)], pass_fds=fds, cwd=ROOT)
    os.close(w)
    os.close(back_r)
    wire.recv(r, reader)  # the child's start-up is not transfer
    wire.send(back_w, {"type": "next"})
    start = time.perf_counter()
    for _ in range(repeats - 1):
        _, arrays = wire.recv(r, reader)
        float(arrays[0][-1])  # touch the data, as the comparison will
        wire.send(back_w, {"type": "next"})
    seconds = (time.perf_counter() - start) / (repeats - 1)
    proc.wait()
    os.close(r)
    os.close(back_w)
    if reader is not None:
        reader.close()
    return seconds


def trace_throughput(tmp: Path, gigabytes: float = 1.05) -> dict:
    import numpy as np

    from xentdbg.records import SideInfo, StepRecord, TensorSpec
    from xentdbg.trace import TraceWriter
    from xentdbg.trace.diff import diff_traces

    n, tensors = 2 << 20, 4  # 8 MiB tensors, 32 MiB per step
    steps = int(gigabytes * 2**30 // (n * 4 * tensors)) + 1
    info = SideInfo("synthetic", {}, [TensorSpec(f"w{i}", (n,), "float32") for i in range(tensors)], [])
    rng = np.random.default_rng(0)
    base = [rng.standard_normal(n).astype(np.float32) for _ in range(tensors)]
    seconds = []
    for name in ("a.h5", "b.h5"):
        start = time.perf_counter()
        with TraceWriter(tmp / name, {"data": {"source": "mnist", "subset": 1, "task": "binary", "pixels": "raw",
                                               "batch_size": 1}}, info, (base, [])) as w:
            for k in range(steps):
                w.write(StepRecord(k, {"loss": [("loss", np.array(k, np.float32))],
                                       "weights": [(f"w{i}", b) for i, b in enumerate(base)]}))
        seconds.append(time.perf_counter() - start)
    size = (tmp / "a.h5").stat().st_size
    start = time.perf_counter()
    diff_traces(str(tmp / "a.h5"), str(tmp / "b.h5"))
    diff_s = time.perf_counter() - start
    return {"trace_mb": size / 2**20, "write_mb_s": size / 2**20 / statistics.median(seconds),
            "diff_mb_s": 2 * size / 2**20 / diff_s, "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    parser.add_argument("--only", choices=["crossfeed", "long", "distributed", "baseline", "sizes", "memory", "trace"],
                        help="run only these entries, merged into --out")
    args = parser.parse_args()
    if args.only:
        results = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
        if args.only == "baseline":
            checked = subprocess.run([PY, "bench/plain/check.py"], cwd=ROOT, capture_output=True, text=True, check=True)
            bitwise = json.loads(checked.stdout.strip().splitlines()[-1])
            assert all(bitwise.values()), f"a plain script trains something else than its setup: {bitwise}"
            results["baseline"] = {
                "machine": _machine(), "versions": versions(), "scripts_bitwise_equal_to_setups": bitwise,
                "case1": baseline_case(CASE1, args.runs),
                "long_clean": baseline_case(LONG, args.runs, a=CLEAN_A),
                "long_clean_fingerprint": baseline_case(LONG, args.runs, ("--fingerprint",), a=CLEAN_A),
                "distributed": baseline_case(DIST, args.runs, a=DIST_A, b=DIST_B)}
        elif args.only == "sizes":
            names = [f"{m} {k}" for m in SIZES for k in ("fit", "loop")]
            checked = subprocess.run([PY, "bench/plain/check.py", *names], cwd=ROOT, capture_output=True,
                                     text=True, check=True)
            bitwise = json.loads(checked.stdout.strip().splitlines()[-1])
            assert all(bitwise.values()), f"a plain script trains something else than its setup: {bitwise}"
            sizes = {"machine": _machine(), "versions": versions(), "scripts_bitwise_equal_to_setups": bitwise}
            for model in SIZES:
                print(f"sizes: {model} ...", flush=True)
                sizes[model] = sizes_case(model, args.runs)
            long_clean = results.get("baseline", {}).get("long_clean")
            if long_clean:  # the case-1 model (785,000 + 1,001 parameters), from --only baseline
                case1_ms = (long_clean["compare_s"] - long_clean["scripts_back_to_back_s"]) / LONG["steps"] * 1e3
                sizes["fit"] = overhead_fit([(786_001, case1_ms)] +
                                            [(sizes[m]["params"], sizes[m]["overhead_ms_per_step"]) for m in SIZES])
            results["sizes"] = sizes
        elif args.only == "distributed":
            results["distributed"] = ratio_case(DIST, args.runs, a=DIST_A, b=DIST_B)
        elif args.only == "memory":
            results["memory"] = memory_case(args.runs)
        elif args.only == "trace":
            with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
                results["trace"] = trace_throughput(Path(tmp))
        elif args.only == "crossfeed":
            with tempfile.TemporaryDirectory() as tmp:
                results["crossfeed"] = crossfeed_cost(args.runs, Path(tmp))
                results["oracle"] = oracle_cost(args.runs, Path(tmp))
        else:  # the 500-step replays again (the split is kept from the last full run)
            split = results.get("long", {}).get("split")
            results["long"] = ratio_case(LONG, args.runs)
            if split is not None:
                results["long"]["split"] = split
            results["long_clean"] = ratio_case(LONG, args.runs, a=CLEAN_A)
        results[f"{args.only}_date"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        _print(results)
        return
    results = kept_by_full_run(json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {})
    results.update({"machine": _machine(), "versions": versions(),
                    "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime())})
    print("1. case 1 ...", flush=True)
    results["case1"] = ratio_case(CASE1, args.runs)
    print("2. long run ...", flush=True)
    results["long"] = ratio_case(LONG, args.runs)
    with tempfile.TemporaryDirectory() as tmp:
        results["long"]["split"] = overhead_split(LONG, Path(tmp))
    print("2b. long run, clean pair: full capture and --fingerprint ...", flush=True)
    results["long_clean"] = ratio_case(LONG, args.runs, a=CLEAN_A)
    results["long_clean_fingerprint"] = ratio_case(LONG, args.runs, ("--fingerprint",), a=CLEAN_A)
    results["long_fingerprint"] = ratio_case(LONG, args.runs, ("--fingerprint",))
    print("2c. cross-feed cost ...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        results["crossfeed"] = crossfeed_cost(args.runs, Path(tmp))
        results["oracle"] = oracle_cost(args.runs, Path(tmp))
    print("3. memory at 50 steps ...", flush=True)
    results["memory"] = {"peak_rss_mb_50": ratio_case({**LONG, "steps": 50}, 1)["peak_rss_mb"],
                         "peak_rss_mb_500": results["long"]["peak_rss_mb"]}
    results["memory"]["growth"] = results["memory"]["peak_rss_mb_500"] / results["memory"]["peak_rss_mb_50"] - 1
    print("4. trace throughput ...", flush=True)
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
        results["trace"] = trace_throughput(Path(tmp))
    print("5. one device against 4 replicas ...", flush=True)
    results["distributed"] = ratio_case(DIST, args.runs, a=DIST_A, b=DIST_B)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    _print(results)


def _machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(terse=True), "python": platform.python_version()}


# The entries each --only run measures (and dates with results[f"{only}_date"]); the others,
# and these until such a run, are dated by the last full run's results["date"].
ONLY_RUNS = {"long": ("long", "long_clean"), "crossfeed": ("crossfeed", "oracle"), "memory": ("memory",),
             "trace": ("trace",), "distributed": ("distributed",), "baseline": ("baseline",), "sizes": ("sizes",)}


def kept_by_full_run(existing: dict) -> dict:
    """What a full run keeps of an existing results file: the entries only their own --only
    run measures (baseline, sizes), with their dates. Everything else it measures again,
    and the --only dates of those entries go with the old values."""
    return {k: v for k, v in existing.items() if k in ("baseline", "baseline_date", "sizes", "sizes_date")}


def measured_on(r: dict, key: str) -> str:
    """When entry ``key`` of results ``r`` was measured (UTC), for the table's last column."""
    for only, keys in ONLY_RUNS.items():
        if key in keys and f"{only}_date" in r:
            return str(r[f"{only}_date"])
    return "" if key in ("baseline", "sizes") else str(r.get("date", ""))


def _print(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="xentdbg bench (medians)")
    for col in ("measure", "value", "target", "measured (UTC)"):
        t.add_column(col)

    def row(key: str, measure: str, value: str, target: str) -> None:
        t.add_row(measure, value, target, measured_on(r, key))

    c1, lg, sp, mem, tr = r["case1"], r["long"], r["long"]["split"], r["memory"], r["trace"]
    row("case1", "case 1: compare / plain A+B",
        f"{c1['compare_s']:.1f} s / {c1['plain_s']:.1f} s = {c1['ratio']:.2f}x", "<= 1.0x")
    row("long", "500 steps: compare / plain A+B",
        f"{lg['compare_s']:.1f} s / {lg['plain_s']:.1f} s = {lg['ratio']:.2f}x", "<= 1.5x")
    for key, label, target in (("long_clean", "500 steps, clean pair: compare / plain", "<= 1.5x"),
                               ("long_clean_fingerprint", "500 steps, clean pair: --fingerprint / plain",
                                "<= 1.15x"),
                               ("long_fingerprint", "500 steps, A/B: --fingerprint / plain (stops at step 0)",
                                "<= 1.15x")):
        if key in r:
            v = r[key]
            row(key, label, f"{v['compare_s']:.1f} s / {v['plain_s']:.1f} s = {v['ratio']:.2f}x", target)
    if "crossfeed" in r:
        cf = r["crossfeed"]
        row("crossfeed", "cross-feed: drift pair, 200 steps, unflagged / flagged",
            f"{cf['unflagged']['compare_s']:.1f} s / {cf['flagged']['compare_s']:.1f} s "
            f"({cf['flagged']['cross_fed_steps']} steps cross-fed, {cf['ms_per_cross_fed_step']:.0f} ms each)",
            "only at flagged steps")
    if "oracle" in r:
        o = r["oracle"]
        row("oracle", "float64 oracle: smoothing pair, 30 steps, with / --no-float64",
            f"{o['smoothed_float64']['compare_s']:.1f} s / {o['smoothed_no_float64']['compare_s']:.1f} s "
            f"(+{o['float64_extra_s']:.1f} s for {o['smoothed_float64']['float64_checks']} check)",
            "only at borderline steps")
        row("oracle", "float64 oracle: case-1 pair, 500 steps (exit 0)",
            f"{o['case1_500_steps']['compare_s']:.1f} s ({o['case1_500_steps']['float64_checks']} check)", "")
    for key, label, target in (("case1", "case 1", "<= 1.15x at once"),
                               ("long_clean", "500 steps, full capture", "<= 1.2x back to back"),
                               ("long_clean_fingerprint", "500 steps, --fingerprint", "<= 1.05x back to back"),
                               ("distributed", "one device vs 4 replicas, 200 steps", "")):
        v = r.get("baseline", {}).get(key)
        if v:
            row("baseline", f"{label}: compare / your scripts (back to back; at once)",
                f"{v['compare_s']:.1f} s / {v['scripts_back_to_back_s']:.1f} s = {v['ratio_back_to_back']:.2f}x; "
                f"/ {v['scripts_at_once_s']:.1f} s = {v['ratio_at_once']:.2f}x", target)
    for model, target in (("convnet", "<= 1.3x"), ("mlp", "<= 1.5x; RSS <= 2x")):
        v = r.get("sizes", {}).get(model)
        if v:
            row("sizes", f"{v['params'] / 1e6:.1f}M-parameter {model}, {v['steps']} steps: compare / your scripts "
                         "(back to back); peak RSS / both scripts'",
                f"{v['compare_s']:.1f} s / {v['scripts_back_to_back_s']:.1f} s = {v['ratio_back_to_back']:.2f}x; "
                f"{v['compare_peak_rss_mb']:.0f} MB / {v['scripts_peak_rss_mb_sum']:.0f} MB = "
                f"{v['rss_ratio_to_sum']:.2f}x", target)
    fit = r.get("sizes", {}).get("fit")
    if fit:
        row("sizes", "overhead per step against parameters (least squares, 3 sizes)",
            f"{fit['ms_per_step_at_0']:.1f} ms + {fit['ms_per_step_per_million_params']:.2f} ms per M", "")
    if "distributed" in r:
        dv = r["distributed"]
        row("distributed", "one device vs 4 replicas, 200 steps: compare / plain A+B",
            f"{dv['compare_s']:.1f} s / {dv['plain_s']:.1f} s = {dv['ratio']:.2f}x", "")
    train, capture = sp["train_ms_per_step"], sp["capture_ms_per_step"]
    row("case1", "  training per step A / B", f"{train['a']:.1f} / {train['b']:.1f} ms", "")
    row("case1", "  capture per step A / B", f"{capture['a']:.1f} / {capture['b']:.1f} ms", "")
    row("case1", "  transfer per step",
        f"{sp['transfer_ms_per_step']:.1f} ms ({sp['record_bytes_per_step'] / 2**20:.1f} MiB)", "")
    row("case1", "  comparison per step", f"{sp['compare_ms_per_step']:.1f} ms", "")
    row("memory", "peak RSS 50 -> 500 steps",
        f"{mem['peak_rss_mb_50']:.0f} -> {mem['peak_rss_mb_500']:.0f} MB ({mem['growth']:+.1%})", "within 10%")
    row("trace", "trace write", f"{tr['write_mb_s']:.0f} MB/s ({tr['trace_mb']:.0f} MB)", "disk speed")
    row("trace", "trace diff", f"{tr['diff_mb_s']:.0f} MB/s (both traces read)", "disk speed")
    Console().print(t)


if __name__ == "__main__":
    main()
