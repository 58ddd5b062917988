"""One implementation in its own process: ``python -m xentdbg.losses._child KEY LOSS FROM_LOGITS DIR``.

Reads ``DIR/inputs.npz`` (``y_true``, ``y_pred``; ``allow_pickle=False``), calls
:data:`xentdbg.losses.implementations.CHILD_FUNCTIONS` ``[KEY]``, writes its arrays to
``DIR/KEY.npz`` and then ``DIR/KEY.json`` (``status``, ``version``, ``message``): the
JSON file appears last, so its presence means the arrays are complete. A library that
raises becomes ``status: error`` with the exception's message, never a traceback on the
user's terminal. Keras reads ``KERAS_BACKEND`` from the environment the parent set.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str]) -> int:
    key, loss, from_logits, folder = argv[0], argv[1], argv[2] == "1", Path(argv[3])
    from xentdbg.losses.implementations import CHILD_FUNCTIONS

    with np.load(folder / "inputs.npz", allow_pickle=False) as data:
        y_true, y_pred = data["y_true"], data["y_pred"]
    try:
        arrays, version = CHILD_FUNCTIONS[key](loss, y_true, y_pred, from_logits)
        np.savez(folder / f"{key}.npz", **arrays)
        meta = {"status": "ok", "version": version}
    except ModuleNotFoundError as e:
        meta = {"status": "not installed", "message": f"{e.name or e} not installed"}
    except Exception as e:  # noqa: BLE001 - any library failure is a row of the report, not a crash
        text = str(e).strip().splitlines()
        meta = {"status": "error", "message": f"{type(e).__name__}: {text[0] if text else ''}"[:500]}
    (folder / f"{key}.json").write_text(json.dumps(meta))
    return 0


if __name__ == "__main__":
    from xentdbg._exit import fast_exit

    fast_exit(main(sys.argv[1:]))
