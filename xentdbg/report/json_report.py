"""The compare report as plain data (``--json``): the same content as the terminal report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xentdbg.compare.divergence import TensorComparison
from xentdbg.compare.metrics import Tolerance
from xentdbg.compare.result import CompareResult
from xentdbg.errors import XentdbgError
from xentdbg.findings import jsonable
from xentdbg.records import SideInfo
from xentdbg.report import sides
from xentdbg.report.data_order import data_order

SCHEMA_VERSION = 6
"""6: each side (``a``, ``b``) has ``python``, the interpreter its worker ran under
(``--python-a/--python-b``; null in a ``diff`` of traces recorded before), and
``versions``, its version set (python, tensorflow, keras, tf_keras, jax, jaxlib, flax,
optax, numpy: those the setup imported); ``framework`` also carries ``executable`` and
these versions.
5: ``data_order`` (null when every batch agreed) accounts for batches that differ:
``reordered_steps`` (the same samples in another order, compared aligned: a mean loss
does not depend on the order, so such a step alone is no divergence), ``step``/``kind``
(the first step whose sides trained on other samples), ``remaining`` (the label of the
first divergence left after alignment; ``remaining_divergence`` it in full for other
samples), ``whole_story``, ``realigned`` (each side re-run on the
other's batch from the same weights: both views' first divergences) and ``lines``;
``per_step[].alignment`` and ``per_step[].realigned`` carry the same per step.
4: ``per_step[].crossfeed`` records both cross-fed views of every flagged step and,
for a small difference a step introduced, the float64 oracle's check
(``crossfeed.float64``: per tensor the float32 and float64 gaps and each side's float32
error); ``drift.rounded`` lists the steps the oracle showed to be float32 rounding.
3: a flagged step is re-run cross-fed (each side from the other's pre-step values):
``verdict`` says which numbers decided (``view``) and carries both views' first
divergences; ``first_divergence`` and ``also_diverged_in_step`` come from the deciding
view; ``drift`` lists the steps whose differences were inherited (exit 0 for drift
alone); ``per_step[].flagged`` is the first recorded tensor outside tolerance and
``per_step[].drift`` whether it was inherited; phase ``updates`` (``w_after - w_before``)
is compared at its own scale.
2: ``first_divergence`` is the first divergence of a deciding phase (layer outputs never
decide; ``first_layer_output_divergence`` locates it); ``metrics.cosine`` and
``metrics.max_rel`` may be null and ``max_abs`` "nan" when no element is finite on both
sides; ``metrics.finite_pairs`` / ``metrics.size`` say what the differences cover."""


def tensor_dict(t: TensorComparison, tol: Tolerance | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"step": t.step, "phase": t.phase, "name_a": t.name_a, "name_b": t.name_b, "ok": t.ok}
    if t.metrics is not None:
        metrics = t.metrics.to_dict()
        if tol is not None:
            metrics["needed_atol"] = t.metrics.needed_atol(tol)
            metrics["needed_rtol"] = t.metrics.needed_rtol(tol)
        d["metrics"] = metrics
    if t.summary_a is not None and t.summary_b is not None:
        d["summary_a"], d["summary_b"] = t.summary_a.to_dict(), t.summary_b.to_dict()
    if t.value_a is not None or t.value_b is not None:
        d["value_a"], d["value_b"] = t.value_a, t.value_b
    if t.note:
        d["note"] = t.note
    return d


def side_dict(path: str, info: SideInfo, env: dict[str, str]) -> dict[str, Any]:
    return {"setup": path, "kind": info.kind, "framework": info.framework, "env": env,
            "python": sides.interpreter(info.framework, env), "versions": sides.versions(info.framework),
            "params": [p.to_dict() for p in info.params], "state": [s.to_dict() for s in info.state],
            "layers": info.layers}


def result_dict(result: CompareResult) -> dict[str, Any]:
    cfg, tol = result.config, result.config.tolerance
    first = result.first
    first_step = next((s for s in result.steps if s.first is not None), None)
    crossfeed = first_step.crossfeed if first_step else None
    first_step = first_step.deciding if first_step else None
    return jsonable({
        "schema": SCHEMA_VERSION,
        "versions": result.versions,
        "exit_code": result.exit_code,
        "a": side_dict(cfg.setup_a, result.info_a, cfg.env_a),
        "b": side_dict(cfg.setup_b, result.info_b, cfg.env_b),
        "data": cfg.data.to_dict(),
        "steps_run": len(result.steps),
        "init": cfg.init,
        "tolerance": {"rtol": tol.rtol, "atol": tol.atol, "rule": tol.describe()},
        "first_divergence": tensor_dict(first, tol) if first else None,
        "first_layer_output_divergence": (tensor_dict(first_step.first_activation, tol)
                                          if first_step and first_step.first_activation else None),
        "also_diverged_in_step": ([tensor_dict(t, tol) for t in first_step.divergences if t is not first]
                                  if first_step else []),
        "per_step": [{"step": s.step, "loss_a": s.loss_a, "loss_b": s.loss_b, "max_grad_diff": s.max_grad_diff,
                      "divergent_tensors": len(s.divergences),
                      "training_flags": {"a": s.flags_a, "b": s.flags_b},
                      "first": s.first.label if s.first else None,
                      "flagged": s.flagged.label if s.flagged else None, "drift": s.drift,
                      "crossfeed": s.crossfeed.to_dict() if s.crossfeed is not None else None,
                      "alignment": s.alignment.to_dict() if s.alignment is not None else None,
                      "reordered": s.reordered,
                      "realigned": s.realigned.to_dict() if s.realigned is not None else None}
                     for s in result.steps],
        "verdict": ({"view": crossfeed.view, "crossfeed": crossfeed.to_dict()} if crossfeed is not None
                    else {"view": "recorded", "crossfeed": None}) if first else None,
        "drift": result.drift.to_dict() if result.drift else None,
        "data_order": _data_order(result, tol),
        "all_bitwise_equal": result.all_bitwise_equal,
        "nonfinite_loss_from": result.nonfinite_loss_from,
        "diagnosis": result.diagnosis.to_dict() if result.diagnosis else None,
        "calibration": result.calibration.to_dict() if result.calibration else None,
        "mode": result.capture.value,
        "fingerprint_pass": result.fingerprint_pass.to_dict() if result.fingerprint_pass else None,
        "notes": result.notes,
    })


def _data_order(result: CompareResult, tol: Tolerance) -> dict[str, Any] | None:
    """:func:`~xentdbg.report.data_order.data_order`, with ``remaining_divergence``: the
    divergence left after each side was re-run on the other's batch, in full (a reordered
    batch's is ``first_divergence`` itself)."""
    account = data_order(result)
    if account is None:
        return None
    step = next((s for s in result.steps if s.step == account["step"] and s.realigned is not None), None)
    remaining = step.realigned.first if step is not None and step.realigned is not None else None
    return {**account, "remaining_divergence": tensor_dict(remaining, tol) if remaining is not None else None}


def error_dict(err: XentdbgError) -> dict[str, Any]:
    d = {"schema": SCHEMA_VERSION, "exit_code": err.exit_code, "error": err.message, "hint": err.hint,
         "detail": err.detail}
    for key in ("side", "step"):
        if hasattr(err, key):
            d[key] = getattr(err, key)
    return d


def write(path: str | Path, data: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
