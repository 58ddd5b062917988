"""A setup declares its data next to its code (``@xentdbg.declare``); the coordinator reads
the declaration from the source without running it; the command line overrides it; two
sides that declare different values are an error naming both. Also the data layouts and
label forms themselves. In-process, no framework."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import xentdbg
from xentdbg.cli import app
from xentdbg.data import DataSpec, load
from xentdbg.data.declared import DEFAULTS, resolve
from xentdbg.errors import UsageError
from xentdbg.replay.loading import SetupRef, declared_data

SETUP = '''
import xentdbg
import some_framework_that_is_never_imported

@xentdbg.declare(task="digits", pixels="unit", layout="28x28x1", labels="sparse", batch_size=128)
def setup(data):
    raise AssertionError("never run by the coordinator")

@declare(task="binary")
def other(data):
    pass

def plain(data):
    pass

SIZE = 64

@xentdbg.declare(batch_size=SIZE)
def computed(data):
    pass

@xentdbg.declare(task="letters")
def wrong(data):
    pass
'''


@pytest.fixture
def setup_file(tmp_path):
    path = tmp_path / "declaring.py"
    path.write_text(SETUP)
    return path


def test_the_declaration_is_read_from_the_source_without_running_it(setup_file):
    read = declared_data(SetupRef.parse(str(setup_file)), "setup A")
    assert read == {"task": "digits", "pixels": "unit", "layout": "28x28x1", "labels": "sparse", "batch_size": 128}
    assert declared_data(SetupRef.parse(f"{setup_file}:other"), "setup A") == {"task": "binary"}
    assert declared_data(SetupRef.parse(f"{setup_file}:plain"), "setup A") == {}
    assert declared_data(SetupRef.parse(f"{setup_file}:missing"), "setup A") == {}  # the worker reports it


def test_a_declaration_must_be_literal_and_valid(setup_file):
    with pytest.raises(UsageError, match="batch_size with an expression"):
        declared_data(SetupRef.parse(f"{setup_file}:computed"), "setup A")
    with pytest.raises(UsageError, match="task='letters': choose one of binary, digits"):
        declared_data(SetupRef.parse(f"{setup_file}:wrong"), "setup B")


def test_the_decorator_checks_and_marks_at_run_time():
    @xentdbg.declare(task="digits", steps=5)
    def setup(data):
        return data

    assert setup.__xentdbg_data__ == {"task": "digits", "steps": 5}
    with pytest.raises(UsageError, match="not a data option"):
        xentdbg.declare(colour="red")
    with pytest.raises(UsageError, match="a positive integer"):
        xentdbg.declare(batch_size=0)


def test_command_line_then_declarations_then_defaults():
    given = {k: None for k in DEFAULTS}
    assert resolve(given, {}) == DEFAULTS
    both = {"setup A": {"task": "digits", "layout": "28x28"}, "setup B": {"task": "digits"}}
    out = resolve(given, both)
    assert (out["task"], out["layout"], out["pixels"]) == ("digits", "28x28", "raw")
    assert resolve({**given, "task": "binary"}, both)["task"] == "binary"  # the command line wins
    with pytest.raises(UsageError) as e:
        resolve(given, {"setup A": {"labels": "sparse"}, "setup B": {"labels": "onehot"}})
    assert "setup A declares labels='sparse', setup B declares labels='onehot'" in str(e.value)
    assert "--labels" in e.value.hint


def test_disagreeing_sides_stop_before_any_worker(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("import xentdbg\n@xentdbg.declare(layout='28x28x1')\ndef setup(data): pass\n")
    b.write_text("import xentdbg\n@xentdbg.declare(layout='flat')\ndef setup(data): pass\n")
    result = CliRunner().invoke(app, ["compare", str(a), str(b)], env={"COLUMNS": "1000"})
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "setup A declares layout='28x28x1', setup B declares layout='flat'" in text
    assert "--layout" in text
    bad = CliRunner().invoke(app, ["compare", str(a), str(a), "--labels", "dense"], env={"COLUMNS": "1000"})
    assert bad.exit_code == 2 and "--labels 'dense': choose one of onehot, sparse" in " ".join(bad.output.split())


@pytest.mark.parametrize(("layout", "shape"), [("flat", (784,)), ("28x28", (28, 28)), ("28x28x1", (28, 28, 1))])
def test_layouts_hold_the_same_pixels(layout, shape):
    flat = load(DataSpec(subset=8, batch_size=8, pixels="unit"))
    data = load(DataSpec(subset=8, batch_size=8, pixels="unit", layout=layout))
    assert data.x.shape == (8, *shape) and data.input_shape == shape
    assert np.array_equal(data.x.reshape(8, -1), flat.x)


def test_sparse_labels_are_class_indices_and_densify_to_the_onehot_form():
    for task in ("binary", "digits"):
        onehot = load(DataSpec(subset=20, batch_size=10, task=task))
        sparse = load(DataSpec(subset=20, batch_size=10, task=task, labels="sparse"))
        assert sparse.y.dtype == np.int32 and sparse.y.shape == (20,)
        assert np.array_equal(sparse.dense_labels(sparse.y), onehot.y)


def test_any_npz_of_mnist_shapes(tmp_path):
    bundled = load(DataSpec(subset=50, batch_size=50))
    images = (bundled.x.reshape(50, 28, 28)).astype(np.uint8)
    for name, x, y in (("flat", images.reshape(50, 784), bundled.labels),
                       ("channels", images[..., None], bundled.labels),
                       ("onehot", images, np.eye(10, dtype=np.float32)[bundled.labels])):
        path = tmp_path / f"{name}.npz"
        np.savez(path, x=x, y=y)
        got = load(DataSpec(source=str(path), subset=50, batch_size=50))
        assert np.array_equal(got.x, bundled.x) and np.array_equal(got.labels, bundled.labels), name
    np.savez(tmp_path / "odd.npz", x=np.zeros((5, 32, 32)), y=np.zeros(5))
    with pytest.raises(UsageError, match=r"expected MNIST images"):
        load(DataSpec(source=str(tmp_path / "odd.npz"), subset=5, batch_size=5))


@pytest.mark.slow
def test_a_shape_error_on_the_first_step_names_the_options(tmp_path):
    from conftest import SETUPS, run_cli

    setup = f"{SETUPS / 'jax_steps.py'}:stax_cnn"
    run = run_cli("trace", setup, "--out", str(tmp_path / "t.h5"), "--steps", "1", "--subset", "32", tmp_path=tmp_path)
    assert run.code == 3, run.output
    text = " ".join(run.stderr.split())
    assert "xentdbg fed x (784,) per sample" in text and "--layout (flat, 28x28, 28x28x1)" in text
    fixed = run_cli("trace", setup, "--out", str(tmp_path / "t.h5"), "--steps", "1", "--subset", "32",
                    "--layout", "28x28x1", tmp_path=tmp_path)
    assert fixed.code == 0, fixed.output
