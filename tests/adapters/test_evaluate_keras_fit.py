"""``KerasFitAdapter.evaluate``, the cross-feed probe, on both Keras backends (real
frameworks, no mocks).

``tests/setups/evaluate_check.py`` trains a setup with full capture and, inside ``emit``
at every step k, re-runs step k and step k-1 from the side's own pre-step weights and
state; every phase must be the record's, and the run must still end where the plain run
ends. Two setups per backend: ``keras_bn.py`` (BatchNorm, Dropout, L2, Nesterov SGD) and
``evaluate_check.py:optimizer_options`` (LossScaleOptimizer around Adam with
global_clipnorm and weight decay, a compiled metric; XLA on JAX). The backend is fixed
per process, so each backend runs in a subprocess; both run at once (2 cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from xentdbg.adapters import _keras_private as private
from xentdbg.adapters.keras_fit import KerasFitAdapter
from xentdbg.errors import UnsupportedLibrary

from conftest import ROOT, SETUPS, shared

BACKENDS = ("tensorflow", "jax")
SETUP_FILES = {"keras_bn": str(SETUPS / "keras_bn.py"),
               "optimizer_options": f"{SETUPS / 'evaluate_check.py'}:optimizer_options"}
# checked only as the cross-feed calls evaluate: the record's gradients given, no state
STATELESS = f"given-gradients:{SETUPS / 'evaluate_check.py'}:stateless"
# 200 samples, batch 100: the 3 steps cross an epoch boundary (step 2 starts the second).
ARGS = ["200", "100", "3", "digits", "unit"]
PHASES = ("loss", "gradients", "activations", "state", "weights")

def _run_both() -> dict[str, dict[str, Any]]:
    """Both backends' checks, started together, each in its own process."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    procs = {b: subprocess.Popen([sys.executable, str(SETUPS / "evaluate_check.py"), *ARGS,
                                  *SETUP_FILES.values(), STATELESS], cwd=ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env={**env, "KERAS_BACKEND": b})
             for b in BACKENDS}
    results = {}
    for b, proc in procs.items():
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, f"{b}: {err[-3000:]}"
        by_file = json.loads(out.strip().splitlines()[-1])
        results[b] = {name: by_file[ref] for name, ref in {**SETUP_FILES, "stateless": STATELESS}.items()}
    return results


@pytest.fixture(scope="module")
def results(session_tmp) -> dict[str, dict[str, Any]]:
    """Run once per session, on first use, also under xdist (``conftest.shared``)."""
    return shared("tests/setups/evaluate_check.py " + json.dumps([ARGS, SETUP_FILES, STATELESS]), _run_both,
                  session_tmp)


# -- real frameworks ---------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("setup", list(SETUP_FILES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_evaluate_from_own_values_reproduces_the_records(results, backend: str, setup: str) -> None:
    """At step k's emit, evaluate(k) and evaluate(k-1) from the pre-step weights and state
    give the record's loss, gradients, activations, state and weights, bitwise: loss,
    gradients and activations come from the records' own recompute, state and weights
    from fit's own train step, compiled as fit compiles it."""
    result = results[backend][setup]
    assert result["problems"] == [] and result["records"] == 3
    stats = result["stats"]
    for phase in PHASES:
        assert stats[phase]["compared"] > 0, phase
        assert stats[phase]["bitwise"], (phase, stats[phase])


@pytest.mark.slow
@pytest.mark.parametrize("setup", list(SETUP_FILES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_evaluate_with_given_gradients(results, backend: str, setup: str) -> None:
    """Given the recorded gradients, the optimizer applies them as fit did. Bitwise for SGD
    and on TF; on JAX with Adam the update is compiled apart from the gradients, so XLA
    fuses Adam's moments into it differently than in fit's step: measured 1 ulp (3e-8)."""
    stats = results[backend][setup]["stats"]
    for phase in PHASES:
        entry = stats[f"{phase} (given grads)"]
        assert entry["compared"] > 0, phase
        if phase != "weights" or setup == "keras_bn" or backend == "tensorflow":
            assert entry["bitwise"], (phase, entry)
        else:
            assert entry["max_abs_diff"] <= 1e-6, entry


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_given_gradients_and_no_state_the_step_is_not_run(results, backend: str) -> None:
    """The cross-feed's call on a model without state (Dense layers under Nesterov SGD):
    given the record's gradients, the weights are the optimizer's update of them and
    fit's own step, which would only give the state, is neither compiled nor run; loss,
    gradients, activations and weights are still the record's, bitwise."""
    result = results[backend]["stateless"]
    # per step: the loss, 4 gradients, 2 layer outputs and 4 weights
    assert result["compared"] == 3 * 11 and result["bitwise"], result
    assert result["state"] == [] and result["train_step_runs"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("setup", list(SETUP_FILES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_evaluate_changes_nothing_training_uses(results, backend: str, setup: str) -> None:
    """The run with evaluate calls at every step ends bitwise where the plain run ends:
    every model variable (RNG seed states included), optimizer variable and metrics
    variable; evaluate after train() returned changes none either."""
    result = results[backend][setup]
    assert result["final_equal_plain"], result
    assert result["unchanged_by_late_evaluate"], result


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_evaluate_other_values_and_after_train(results, backend: str) -> None:
    """Other weights give another loss and other weights; other BatchNorm statistics leave
    the training loss alone but are carried into the state; after train() returned the
    last two steps are held (the last one's weights are the final weights), older ones
    raise ValueError."""
    result = results[backend]["keras_bn"]
    assert result["loss_changed"] and result["weights_changed"]
    assert result["state_follows"] and result["loss_same_with_other_state"]
    assert result["after_train_weights_equal_final"]
    assert result["problems"] == []  # includes: step last-2 raised "no longer held"


# -- no framework ------------------------------------------------------------------------

def test_evaluate_without_a_full_capture_raises_value_error() -> None:
    adapter = KerasFitAdapter.__new__(KerasFitAdapter)  # no model needed for this path
    adapter._capture = None
    with pytest.raises(ValueError, match="step 3 is no longer held"):
        adapter.evaluate(3, [], None)


def test_jax_train_state_optimizer_variables() -> None:
    assert private.jax_train_state_optimizer_variables(("tv", "ntv", "opt", "metrics")) == "opt"
    with pytest.raises(UnsupportedLibrary, match="4-tuple train state"):
        private.jax_train_state_optimizer_variables(("tv", "ntv", "metrics"))
