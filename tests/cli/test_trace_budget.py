"""Output a person can live with: the traces' size, estimated before a run and held to a
budget (``--trace-budget``, ``--trace-only``, ``--trace-every``; ``trace --budget``)."""

from __future__ import annotations

import re

import pytest

from xentdbg.data import DataSpec
from xentdbg.data import load as load_data
from xentdbg.errors import UsageError
from xentdbg.records import PHASES, SideInfo, TensorSpec
from xentdbg.replay.tracing import (
    DATASET_OVERHEAD,
    STEP_OVERHEAD,
    activation_elements,
    check_budget,
    estimate_traces,
    fmt_size,
    parse_phases,
    parse_size,
)
from xentdbg.trace.reader import load_trace

from conftest import SETUPS, run_cli

SMALL = str(SETUPS / "jax_small.py")
KERAS = SideInfo("KerasFit", {}, params=[TensorSpec("sequential/dense/kernel", (784, 1000), "float32"),
                                         TensorSpec("sequential/dense/bias", (1000,), "float32"),
                                         TensorSpec("sequential/dense_1/kernel", (1000, 1), "float32"),
                                         TensorSpec("sequential/dense_1/bias", (1,), "float32")],
                 state=[], layers=["input_layer", "dense", "dense_1"])
JAX = SideInfo("JaxLoop", {}, params=[TensorSpec("[0][0]", (784, 1000), "float32"),
                                      TensorSpec("[0][1]", (1000,), "float32"),
                                      TensorSpec("[2][0]", (1000, 1), "float32"),
                                      TensorSpec("[2][1]", (1,), "float32")],
               state=[], layers=["layers[0]:Dense", "layers[1]:relu", "layers[2]:Dense", "layers[3]:sigmoid"])


def test_layer_outputs_from_the_handshake():
    # Keras: the input layer passes its 784 features on; JAX stax: relu keeps Dense's 1000
    assert activation_elements(KERAS, 784) == 784 + 1000 + 1
    assert activation_elements(JAX, 784) == 1000 + 1000 + 1 + 1


def test_estimate_counts_what_each_written_step_holds():
    data = load_data(DataSpec(subset=300, batch_size=100))
    params = 4 * (784 * 1000 + 1000 + 1000 + 1)
    initial = params + 4 * DATASET_OVERHEAD
    step = (STEP_OVERHEAD + 2 * 100 * 8 + 4 * 100 * 2002 + 4 + 2 * params
            + DATASET_OVERHEAD * (2 + 4 + 1 + 4 + 4))
    full = estimate_traces([JAX], data, 10, 1, PHASES)
    assert (full.bytes, full.files, full.steps) == (initial + 10 * step, 1, 10)
    thin = estimate_traces([JAX, JAX], data, 10, 3, ("gradients",))
    assert thin.steps == 4 and thin.files == 2  # steps 0, 3, 6, 9
    assert thin.bytes == 2 * (initial + 4 * (STEP_OVERHEAD + 4 + params + 5 * DATASET_OVERHEAD))
    assert full.describe() == f"about {fmt_size(full.bytes)} (1 file, 10 steps each)"


def test_sizes_and_phases():
    assert parse_size("2GB", "--b") == 2 * 10**9 and parse_size("500 mb", "--b") == 5 * 10**8
    assert parse_size("1.5GiB", "--b") == 3 * 2**29 and parse_size("none", "--b") is None
    assert parse_size(None, "--b") == 2 * 10**9  # the default
    assert [fmt_size(n) for n in (812, 1500, 250_000_000, 4_140_000_000, 2 * 10**9)] == \
        ["812 bytes", "1.5 kB", "250 MB", "4.1 GB", "2 GB"]
    with pytest.raises(UsageError, match="--trace-budget '2 parsecs' is not a size"):
        parse_size("2 parsecs", "--trace-budget")
    assert parse_phases("loss, gradients", "--trace-only") == ("loss", "gradients")
    with pytest.raises(UsageError, match="--trace-only bogus: unknown phase"):
        parse_phases("loss,bogus", "--trace-only")


def test_budget_refusal_names_the_ways_out():
    data = load_data(DataSpec())
    estimate = estimate_traces([JAX, JAX], data, 5000, 1, PHASES)
    check_budget(estimate, None, ("--b", "--o", "--e"), "x")  # no limit
    check_budget(estimate, estimate.bytes, ("--b", "--o", "--e"), "x")
    with pytest.raises(UsageError) as nothing_fits:
        check_budget(estimate, estimate.initial, ("--b", "--o", "--e"), "x")
    assert "--e cannot help" in (nothing_fits.value.hint or "")
    with pytest.raises(UsageError) as e:
        check_budget(estimate, 2 * 10**9, ("--trace-budget", "--trace-only", "--trace-every"), "--save-traces t")
    assert e.value.message.startswith(f"--save-traces t would write about {fmt_size(estimate.bytes)} (2 files")
    assert "over --trace-budget 2 GB; nothing was written" in e.value.message
    every = int(re.search(r"--trace-every (\d+) keeps", e.value.hint or "").group(1))
    assert "--trace-only loss,gradients" in e.value.hint and "--trace-budget" in e.value.hint
    assert estimate_traces([JAX, JAX], data, 5000, every, PHASES).bytes <= 2 * 10**9  # the suggestion fits


@pytest.mark.slow
def test_compare_refuses_over_budget_before_training_and_states_the_size(tmp_path):
    folder = tmp_path / "traces"
    args = ["compare", SMALL, SMALL, "--steps", "6", "--subset", "64", "--batch-size", "16",
            "--save-traces", str(folder)]
    refused = run_cli(*args, "--trace-budget", "500kB", tmp_path=tmp_path)
    assert refused.code == 2, refused.output
    stderr = " ".join(refused.stderr.split())
    assert "would write about 1.4 MB (2 files, 6 steps each), over --trace-budget 500 kB; nothing was written" \
        in stderr and "--trace-only" in stderr and "--trace-every 6 keeps" in stderr
    assert not (folder / "a.h5").exists() and refused.report is not None and refused.report["exit_code"] == 2

    run = run_cli(*args, "--trace-every", "2", "--trace-only", "loss,gradients,weights", tmp_path=tmp_path)
    assert run.code == 0, run.output
    (note,) = [n for n in run.report["notes"] if n.startswith("traces: ")]
    assert "(3 steps each; estimated " in note and "before the run)" in note
    size = sum((folder / f"{s}.h5").stat().st_size for s in "ab")
    with load_trace(folder / "a.h5") as a:
        info = a.info
    estimate = estimate_traces([info, info], load_data(DataSpec(subset=64, batch_size=16)), 6, 2,
                               ("loss", "gradients", "weights"))
    assert 0.9 < estimate.bytes / size < 1.1, (estimate.bytes, size)
    with load_trace(folder / "b.h5") as b:
        assert b.steps == [0, 2, 4] and set(b.record(0).tensors) == {"loss", "gradients", "weights"}
