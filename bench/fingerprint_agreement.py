"""Does ``compare --fingerprint`` find the same first divergence as full capture?

    python bench/fingerprint_agreement.py [--out bench/fingerprint_agreement.json] [PAIR ...]

Runs every example pair (``examples/*/pairs.json``) both ways and compares the exit code and the
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


def example_pairs() -> dict[str, tuple[str, str, tuple[str, ...]]]:
    """Every pair of every ``examples/<topic>/pairs.json``, named ``"<topic> <name>"``."""
    pairs = {}
    for index in sorted((ROOT / "examples").glob("*/pairs.json")):
        folder = index.parent.relative_to(ROOT)
        for name, p in json.loads(index.read_text()).items():
            pairs[f"{folder.name} {name}"] = (f"{folder}/{p['a']}", f"{folder}/{p['b']}", tuple(p.get("args", [])))
    return pairs


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
    pairs = example_pairs()
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
