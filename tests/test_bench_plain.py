"""The benchmark's denominators (bench/plain/: the user's own scripts, importing no
xentdbg) train what the setups they stand for train: the same final weights as the
setup's plain run through xentdbg (``run_setup(..., capture=None)``), from the same
seeds, data and steps. Otherwise the ratios in bench/results.json would compare
different work."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import EXAMPLES, ROOT

pytestmark = pytest.mark.slow  # 6 framework processes, started at once

# (script args, setup, data options, steps, subset, batch)
CASES = {
    "keras fit": (["keras_fit.py"], EXAMPLES / "case1_bce" / "keras_fit.py", {}, 3, 300, 100),
    "jax loop": (["jax_loop.py", "stable"], EXAMPLES / "case1_bce" / "jax_stable.py", {}, 3, 300, 100),
    "distributed single": (["distributed.py", "single"], f"{EXAMPLES / 'distributed' / 'model.py'}:single",
                           {"task": "digits", "labels": "sparse", "pixels": "unit"}, 3, 256, 64),
    "distributed replicas4": (["distributed.py", "replicas4"], f"{EXAMPLES / 'distributed' / 'model.py'}:replicas4",
                              {"task": "digits", "labels": "sparse", "pixels": "unit"}, 3, 256, 64),
}
THROUGH_XENTDBG = """
import sys, json, numpy as np
from xentdbg.data import DataSpec
from xentdbg.replay.single import run_setup
for setup, options, steps, subset, batch, out in json.loads(sys.argv[1]):
    run = run_setup(setup, DataSpec(subset=subset, batch_size=batch, **options), steps, capture=None)
    np.savez(out, *run.final_weights)
"""
# The setups' plain runs in two processes (MirroredStrategy's logical devices are set
# before TensorFlow starts, in a process of its own); each plain script in its own.
OURS = [["keras fit", "jax loop", "distributed single"], ["distributed replicas4"]]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("plain")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    cmds = []
    for name, (script, _, _, steps, subset, batch) in CASES.items():
        cmds.append([sys.executable, str(ROOT / "bench" / "plain" / script[0]), *script[1:], str(steps), str(subset),
                     str(batch), "--save", str(tmp / f"{name} plain.npz")])
    for names in OURS:
        jobs = [[str(CASES[n][1]), CASES[n][2], *CASES[n][3:], str(tmp / f"{n} xentdbg.npz")] for n in names]
        cmds.append([sys.executable, "-c", THROUGH_XENTDBG, json.dumps(jobs)])
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for cmd in cmds]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    out = {}
    for name in CASES:
        loaded = [np.load(tmp / f"{name} {kind}.npz") for kind in ("plain", "xentdbg")]
        out[name] = [[f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))] for f in loaded]
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_plain_script_trains_what_its_setup_trains(weights, name):
    plain, ours = weights[name]
    assert [w.shape for w in plain] == [w.shape for w in ours]
    assert all(a.tobytes() == b.tobytes() for a, b in zip(plain, ours, strict=True)), [
        float(np.abs(a - b).max()) for a, b in zip(plain, ours)]
