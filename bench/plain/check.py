"""Whether each plain script (the benchmark's denominators) trains what the setup it
stands for trains: its final weights bitwise equal to the setup's plain run through
xentdbg (``run_setup(..., capture=None)``), from the same seeds, data and steps.
``bench/bench.py --only baseline`` runs it for every script before it measures, and
refuses to measure against a script that trains something else; the test suite runs it
for the case-1 scripts (``tests/test_bench_plain.py``).

Usage: python bench/plain/check.py [CASE ...]   (prints one JSON line: case -> equal)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
# case -> (script and its arguments, setup, steps, subset, batch)
CASES: dict[str, tuple[list[str], str, int, int, int]] = {
    "keras fit": (["keras_fit.py"], str(EXAMPLES / "case1_bce" / "keras_fit.py"), 3, 300, 100),
    "jax loop stable": (["jax_loop.py", "stable"], str(EXAMPLES / "case1_bce" / "jax_stable.py"), 3, 300, 100),
    "jax loop logits": (["jax_loop.py", "logits"], str(EXAMPLES / "case1_bce" / "jax_logits.py"), 3, 300, 100),
    "distributed single": (["distributed.py", "single"], f"{EXAMPLES / 'distributed' / 'model.py'}:single",
                           3, 256, 64),
    "distributed replicas4": (["distributed.py", "replicas4"], f"{EXAMPLES / 'distributed' / 'model.py'}:replicas4",
                              3, 256, 64),
}
SIZES = str(ROOT / "bench" / "setups" / "sizes.py")
for _model, _batch in (("convnet", 64), ("mlp", 100)):
    for _kind in ("fit", "loop"):
        CASES[f"{_model} {_kind}"] = (["sizes.py", _model, _kind], f"{SIZES}:{_model}_{_kind}", 3, 300, _batch)
# The setups' plain runs as bench/plain.py runs them (its ``spec``: the data the setup declares).
THROUGH_XENTDBG = """
import importlib.util, json, sys, numpy as np
from xentdbg.replay.single import run_setup
spec = importlib.util.spec_from_file_location("bench_plain", sys.argv[1])
plain = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plain)
for setup, steps, subset, batch, out in json.loads(sys.argv[2]):
    np.savez(out, *run_setup(setup, plain.spec(setup, subset, batch), steps, capture=None).final_weights)
"""


def _weights(path: Path) -> list[np.ndarray]:
    with np.load(path) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


def check(names: list[str]) -> dict[str, bool]:
    """``{case: equal}``: all the scripts and the setups' plain runs at once, the setups in
    one process, but MirroredStrategy's in its own (its logical devices are set before
    TensorFlow starts)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    with tempfile.TemporaryDirectory() as tmp:
        cmds = []
        for name in names:
            script, _, steps, subset, batch = CASES[name]
            cmds.append([sys.executable, str(ROOT / "bench" / "plain" / script[0]), *script[1:], str(steps),
                         str(subset), str(batch), "--save", f"{tmp}/{name} plain.npz"])
        groups = [[n for n in names if "replicas" not in n], [n for n in names if "replicas" in n]]
        for group in filter(None, groups):
            jobs = [[*CASES[n][1:], f"{tmp}/{n} xentdbg.npz"] for n in group]
            cmds.append([sys.executable, "-c", THROUGH_XENTDBG, str(ROOT / "bench" / "plain.py"), json.dumps(jobs)])
        procs = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for c in cmds]
        for proc in procs:
            _, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(proc.args[:3])} exited {proc.returncode}: {err[-2000:]}")
        out = {}
        for name in names:
            plain, ours = (_weights(Path(f"{tmp}/{name} {kind}.npz")) for kind in ("plain", "xentdbg"))
            out[name] = len(plain) == len(ours) and all(
                a.shape == b.shape and a.tobytes() == b.tobytes() for a, b in zip(plain, ours))
        return out


if __name__ == "__main__":
    print(json.dumps(check(sys.argv[1:] or list(CASES))))
