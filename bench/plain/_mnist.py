"""The bundled MNIST subset as the plain scripts read it: the package's ``mnist_5k.npz``
opened with numpy (no pickle), preprocessed as a user's script would, to the same arrays
xentdbg feeds its setups (``xentdbg/data/__init__.py``, ``load``): the first ``subset``
samples, pixels flattened to float32 (``raw`` 0..255 or ``unit`` 0..1), labels for
``binary`` (digit >= 5, float32 ``(N, 1)``) or ``digits`` (one-hot, or the class index
with ``sparse``). Imports no xentdbg: the file is read by path."""

from pathlib import Path

import numpy as np

FILE = Path(__file__).resolve().parents[2] / "xentdbg" / "data" / "mnist_5k.npz"


def load(subset: int, task: str = "binary", pixels: str = "raw",
         labels: str = "onehot") -> tuple[np.ndarray, np.ndarray]:
    with np.load(FILE, allow_pickle=False) as f:
        images, digits = f["x"][:subset], f["y"][:subset].astype(np.uint8)
    x = images.reshape(len(images), -1).astype(np.float32)
    if pixels == "unit":
        x = x / np.float32(255.0)
    binary = digits >= 5
    if labels == "sparse":
        return x, (binary if task == "binary" else digits).astype(np.int32)
    if task == "binary":
        return x, binary.astype(np.float32)[:, None]
    return x, np.eye(10, dtype=np.float32)[digits]


def batches(steps: int, batch: int, n: int):
    """The slices of steps 0..steps-1: consecutive batches in stored order, each epoch
    from the start (the last one of an epoch shorter when ``batch`` does not divide ``n``)."""
    per_epoch = -(-n // batch)
    for step in range(steps):
        start = (step % per_epoch) * batch
        yield slice(start, min(start + batch, n))


def save_option(argv: list[str]) -> tuple[list[str], str | None]:
    """``argv`` without ``--save PATH``, and PATH (None without it): where a script writes
    its final weights (``np.savez``), for the check that it trains what its setup trains
    (``bench/plain/check.py``)."""
    if "--save" not in argv:
        return argv, None
    i = argv.index("--save")
    return argv[:i] + argv[i + 2:], argv[i + 1]
