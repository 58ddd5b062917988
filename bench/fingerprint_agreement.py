"""Does ``compare --fingerprint`` find the same first divergence as full capture?

    python bench/fingerprint_agreement.py [--out bench/fingerprint_agreement.json] [PAIR ...]

Runs every example pair (``examples/``) both ways and compares the exit code and the
first divergence (step, phase, tensor). Prints one line per pair, writes JSON, and exits
1 if any pair disagrees.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
C1, C2, C3 = "examples/case1_bce", "examples/case2_batchnorm", "examples/case3_tf_function_loss"
CAUSES = "examples/causes"
C2_ARGS = ("--task", "digits", "--pixels", "unit", "--batch-size", "100", "--subset", "300", "--steps", "3")
C3_ARGS = ("--task", "digits", "--pixels", "unit", "--batch-size", "256", "--subset", "512", "--steps", "2")

PAIRS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "case1 stable-jax vs fit": (f"{C1}/jax_stable.py", f"{C1}/keras_fit.py", ()),
    "case1 naive-jax vs fit": (f"{C1}/jax_naive.py", f"{C1}/keras_fit.py", ()),
    "case1 logits-jax vs fit (clean)": (f"{C1}/jax_logits.py", f"{C1}/keras_fit.py", ()),
    "case1 logits-jax vs keras loop (clean)": (f"{C1}/jax_logits.py", f"{C1}/keras_loop.py", ("--steps", "5")),
    "case1 legacy vs logits-jax (clean)": (f"{C1}/legacy_function.py", f"{C1}/jax_logits.py", ("--steps", "5")),
    "case2 fit vs loop model(x)": (f"{C2}/fit.py", f"{C2}/loop_model_call.py", C2_ARGS),
    "case2 fit vs loop training=True (clean)": (f"{C2}/fit.py", f"{C2}/loop_training_true.py", C2_ARGS),
    "case2 fit vs legacy no learning phase": (f"{C2}/fit.py", f"{C2}/legacy_no_learning_phase.py", C2_ARGS),
    "case2 fit vs legacy no updates": (f"{C2}/fit.py", f"{C2}/legacy_no_updates.py", C2_ARGS),
    "case2 fit vs legacy complete (clean)": (f"{C2}/fit.py", f"{C2}/legacy_complete.py", C2_ARGS),
    "case2 raw pixels fit vs loop model(x)": (f"{C2}/fit.py", f"{C2}/loop_model_call.py",
                                              ("--task", "digits", "--batch-size", "100", "--subset", "300",
                                               "--steps", "6")),
    "case3 plain vs tf.function": (f"{C3}/plain.py", f"{C3}/decorated.py", C3_ARGS),
}


def _pairs_in_causes() -> dict[str, tuple[str, str, tuple[str, ...]]]:
    """Pairs listed in examples/causes/pairs.json, when that folder has one."""
    index = ROOT / CAUSES / "pairs.json"
    if not index.exists():
        return {}
    return {name: (f"{CAUSES}/{p['a']}", f"{CAUSES}/{p['b']}", tuple(p.get("args", [])))
            for name, p in json.loads(index.read_text()).items()}


def _run(a: str, b: str, args: tuple[str, ...], extra: tuple[str, ...], tmp: Path) -> dict:
    report = tmp / "r.json"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "xentdbg", "compare", a, b, *args, *extra, "--json", str(report)],
                          cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    data = json.loads(report.read_text()) if report.exists() else {}
    first = data.get("first_divergence")
    key = None if not first else [first["step"], first["phase"], first["name_a"], first["name_b"]]
    return {"exit": proc.returncode, "first": key, "seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pairs", nargs="*", help="Pair names (default: all).")
    parser.add_argument("--match", default="", help="Only pairs whose name contains this.")
    parser.add_argument("--out", default=str(ROOT / "bench" / "fingerprint_agreement.json"))
    args = parser.parse_args()
    pairs = {**PAIRS, **_pairs_in_causes()}
    chosen = {k: v for k, v in pairs.items() if (not args.pairs or k in args.pairs) and args.match in k}
    results, ok = {}, True
    with tempfile.TemporaryDirectory() as tmp:
        for name, (a, b, extra) in chosen.items():
            full = _run(a, b, extra, (), Path(tmp))
            fp = _run(a, b, extra, ("--fingerprint",), Path(tmp))
            same = full["exit"] == fp["exit"] and full["first"] == fp["first"]
            ok &= same
            results[name] = {"full": full, "fingerprint": fp, "same": same}
            print(f"{'same' if same else 'DIFFERENT':9} {name}: exit {full['exit']}/{fp['exit']} "
                  f"first {full['first']} / {fp['first']}  ({full['seconds']} s / {fp['seconds']} s)", flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
