"""The float64 oracle on every adapter, through the real worker protocol: a float64 worker
re-runs step 0 from the float32 side's initial values on the batch the float32 worker
held, in float64, and lands within float32 rounding of the float32 record. The float64
worker is forked by its side's fork server, which switches the imported frameworks to
float64 (``forkserver.enable_float64``); a float64 worker started fresh, which reads
its environment at import, answers bitwise the same."""

from __future__ import annotations

import numpy as np
import pytest

from xentdbg.data import DataSpec
from xentdbg.records import CaptureMode, StepRecord
from xentdbg.replay import forkserver
from xentdbg.replay.loading import SetupRef
from xentdbg.replay.process import start_worker, wait_ready

from conftest import EXAMPLES

pytestmark = pytest.mark.slow

CASE1, CASE2 = EXAMPLES / "case1_bce", EXAMPLES / "case2_batchnorm"
KINDS = {
    "JaxLoop": (CASE1 / "jax_logits.py", {}, "binary"),
    "KerasFit tensorflow": (CASE1 / "keras_fit.py", {}, "binary"),
    "KerasFit jax BatchNorm": (CASE2 / "fit.py", {"KERAS_BACKEND": "jax"}, "digits"),
    "KerasLoop BatchNorm": (CASE2 / "loop_training_true.py", {}, "digits"),
    "LegacyKerasFunction BatchNorm": (CASE2 / "legacy_complete.py", {}, "digits"),
}


def _step0_and_oracle(setup, env: dict, task: str, monkeypatch):
    """Step 0's float32 record, and step 0 re-run in float64 by a forked float64 worker and
    by a fresh one: ``info, info64, record, oracle, fresh``."""
    data = DataSpec(subset=200, batch_size=100, task=task, pixels="unit")
    ref = SetupRef.parse(str(setup))
    w32 = start_worker("A", ref, env, data, 2, CaptureMode.FULL)
    w64 = start_worker("A64", ref, env, data, 2, float64=True)  # forked by A's server; loads while A trains
    with monkeypatch.context() as m:
        m.setenv(forkserver.ENV_SWITCH, "0")
        fresh64 = start_worker("A64", ref, env, data, 2, float64=True)  # a fresh interpreter
    try:
        if forkserver.enabled():
            assert isinstance(w64.proc, forkserver.ForkedProcess)
        assert not isinstance(fresh64.proc, forkserver.ForkedProcess)
        info, params, state = wait_ready(w32, 300)
        w32.send({"type": "init", "params": False, "state": False})
        record = StepRecord.from_wire(*w32.recv(300)).owned()
        header, batch = w32.reply(w32.request({"type": "batch", "step": 0}), "batch", 300)
        assert "error" not in header, header
        request = {"type": "oracle", "params": len(params), "state": len(state), "batch": len(batch)}
        answers = []
        for w in (w64, fresh64):
            info64, _, _ = wait_ready(w, 300)
            header, arrays = w.reply(w.request(request, [*params, *state, *batch]), "probed", 300)
            assert "error" not in header, header
            answers.append((info64, StepRecord.from_wire(header, arrays)))
        assert answers[0][0].params == answers[1][0].params
        return info, answers[0][0], record, answers[0][1], answers[1][1]
    finally:
        for w in (w32, w64, fresh64):
            w.kill()
            w.close(grace=0)


@pytest.mark.parametrize("kind", list(KINDS))
def test_float64_worker_reruns_step_0_in_float64_close_to_the_float32_record(kind, monkeypatch):
    setup, env, task = KINDS[kind]
    info, info64, record, oracle, fresh = _step0_and_oracle(setup, env, task, monkeypatch)
    # the forked float64 worker computes bitwise what a fresh one computes
    assert oracle.tensors.keys() == fresh.tensors.keys()
    for phase, items in oracle.tensors.items():
        for (name, x), (other, y) in zip(items, fresh.tensors[phase], strict=True):
            x, y = np.asarray(x), np.asarray(y)
            assert name == other and x.dtype == y.dtype and x.tobytes() == y.tobytes(), (phase, name)
    assert [p.dtype for p in info64.params] == ["float64"] * len(info.params)
    assert {"loss", "gradients"} <= set(info64.probe)
    assert [n for n, _ in oracle.tensors["gradients"]] == [n for n, _ in record.tensors["gradients"]]
    for phase in ("loss", "gradients", *(("state",) if "state" in info64.probe and info.state else ())):
        for (name, x64), (_, x32) in zip(oracle.tensors[phase], record.tensors[phase], strict=True):
            x64, x32 = np.asarray(x64), np.asarray(x32)
            assert x64.dtype == np.float64, (phase, name, x64.dtype)
            scale = float(np.max(np.abs(x64)))
            # float32 against exact: rounding, far below any real difference (the atol: a bias
            # before BatchNorm has a gradient of about 0, all float32 rounding)
            assert float(np.max(np.abs(x64 - x32))) <= 1e-4 * scale + 1e-6, (phase, name)
