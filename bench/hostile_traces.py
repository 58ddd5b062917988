"""Hostile traces: one file per class a reader must survive, and what ``xentdbg show FILE``
and ``xentdbg diff FILE GOOD`` do with each, measured in a child process each: exit code,
wall time, peak RSS, whether a traceback was printed.

Goal (issue 15): no file above 1 GB of RSS or 10 s, no exit 70 (an internal error), no
traceback. Files the format allows (a step or re-run cut short, long or odd text) read
(exit 0, or 1 for diff when the values differ); the others are refused (exit 2).

Usage: python bench/hostile_traces.py [--keep DIR] [--only NAME,...]

:data:`CLASSES` (name -> (builder, what the reader says or None)) is also used by
tests/trace/test_trace_schema.py. No test dependency: numpy, h5py and xentdbg only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from xentdbg.records import SideInfo, StepRecord, TensorSpec
from xentdbg.trace import TraceWriter

ROOT = Path(__file__).resolve().parents[1]
STEPS = 3


def valid(path: Path, seed: int = 0) -> Path:
    """A small trace with every phase, a state table, gzip, a verdict and both re-runs."""
    rng = np.random.default_rng(seed)
    framework = {"jax": "0.0", "backend": "cpu", "python": "3.11", "platform": "Linux", "devices": "jax:cpu:0"}
    info = SideInfo("JaxLoop", framework, [TensorSpec("w", (4, 3), "float32"), TensorSpec("b", (3,), "float32")],
                    [TensorSpec("m", (3,), "float32")], layers=["dense"])
    params = [rng.standard_normal((4, 3)).astype(np.float32), np.zeros(3, np.float32)]
    meta = {"setup": "hostile.py:setup", "steps": STEPS, "every": 1, "command": "xentdbg trace hostile.py",
            "data": {"source": "mnist", "subset": 64, "task": "binary", "pixels": "raw", "batch_size": 16},
            "frameworks": {"jax": "0.0"}, "env": {}}
    with TraceWriter(path, meta, info, (params, [np.ones(3, np.float32)]), compression="gzip") as w:
        for k in range(STEPS):
            tensors = {
                "inputs": [("x", rng.standard_normal(16)), ("y", rng.standard_normal(16))],
                "activations": [("dense", rng.standard_normal((16, 64)).astype(np.float32))],
                "loss": [("loss", np.float32(1.0 / (k + 1)))],
                "gradients": [("w", rng.standard_normal((4, 3)).astype(np.float32)),
                              ("b", rng.standard_normal(3).astype(np.float32))],
                "state": [("m", rng.standard_normal(3).astype(np.float32))],
                "weights": [("w", rng.standard_normal((4, 3)).astype(np.float32)),
                            ("b", rng.standard_normal(3).astype(np.float32))],
            }
            w.write(StepRecord(k, tensors, flags={"dense": True}, digests={"x": "ab", "y": "cd"}))
            if k == 1:
                w.write_rerun(k, "crossfed", tensors)
                w.write_rerun(k, "float64", {"loss": [("loss", np.float64(0.5))]})
                w.write_verdict(k, {"inherited": False})
    return path


def _edit(change: Callable[[h5py.File], None]) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        valid(path)
        with h5py.File(path, "a") as f:
            change(f)
    return build


def _replace(where: str, name: str | None = "x", **kwargs) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        parent, key = where.rsplit("/", 1)
        del f[where]
        ds = f[parent].create_dataset(key, **kwargs)
        if name is not None:
            ds.attrs["name"] = name
    return change


def _attr(where: str, key: str, value: object) -> Callable[[h5py.File], None]:
    return lambda f: f[where].attrs.__setitem__(key, value)


def _bytes(change: Callable[[bytearray], None]) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        valid(path)
        data = bytearray(path.read_bytes())
        change(data)
        path.write_bytes(bytes(data))
    return build


def _corrupt_chunk(path: Path) -> None:
    """The last step's activation (gzip) keeps its chunk index; its compressed bytes are garbage."""
    valid(path)
    with h5py.File(path, "r") as f:
        chunk = f[f"steps/{STEPS - 1:08d}/activations/000000"].id.get_chunk_info(0)
    with open(path, "r+b") as out:
        out.seek(chunk.byte_offset + 2)
        out.write(b"\xff" * (chunk.size - 2))


def _flip_bits(data: bytearray) -> None:
    rng = np.random.default_rng(15)
    for bit in rng.integers(0, len(data) * 8, 64):
        data[bit // 8] ^= 1 << (bit % 8)


def _interrupted_step(f: h5py.File) -> None:
    """What a writer stopped between ``create_dataset`` and the ``name`` attribute leaves."""
    g = f["steps"].create_group(f"{STEPS:08d}")
    g.attrs["step"] = STEPS
    g.create_group("loss").create_dataset("000000", data=np.float32(0))


def _half_rerun(f: h5py.File) -> None:
    g = f["steps/00000000"].create_group("crossfed")
    g.create_group("gradients").create_dataset("000000", data=np.zeros(3, np.float32))


def _external(f: h5py.File) -> None:
    f["steps/00000000/gradients/000002"] = h5py.ExternalLink("/etc/hostname", "/x")


GiB = 1 << 30
LAST = f"steps/{STEPS - 1:08d}"

CLASSES: dict[str, tuple[Callable[[Path], None], str | None]] = {
    "cycle to steps": (_edit(lambda f: f.__setitem__("steps/00000000/loop", f["steps"])), "hard link"),
    "cycle to root": (_edit(lambda f: f.__setitem__("steps/00000000/activations/root", f["/"])), "hard link"),
    "cycle in place of a phase": (_edit(lambda f: (f.__delitem__("steps/00000001/state"),
                                                   f.__setitem__("steps/00000001/state", f["steps"]))), "hard link"),
    "shared tensor": (_edit(lambda f: (f.__delitem__("steps/00000000/weights/000000"),
                                       f.__setitem__("steps/00000000/weights/000000",
                                                     f["steps/00000000/gradients/000000"]))), "hard link"),
    "6 GiB unwritten activation": (_edit(_replace(f"{LAST}/activations/000000", "dense", shape=(6 * GiB // 8 - 1,),
                                                  dtype="float64", chunks=(1 << 17,))), "stores 0 bytes"),
    "6 GiB unwritten loss": (_edit(_replace(f"{LAST}/loss/000000", "loss", shape=(6 * GiB // 8 - 1,),
                                            dtype="float64", chunks=(1 << 17,))), "a loss is a scalar"),
    "6 GiB unwritten input": (_edit(_replace(f"{LAST}/inputs/000000", "x", shape=(6 * GiB // 8 - 1,),
                                             dtype="float64", chunks=(1 << 17,))), "per-sample vectors"),
    "chunk larger than its tensor": (_edit(_replace(f"{LAST}/activations/000000", "dense", shape=(4,), maxshape=(None,),
                                                    dtype="float64", chunks=(1 << 24,))), "declares chunks"),
    "meta is a list": (_edit(_attr("/", "meta", "[1, 2]")), "not an object"),
    "info.params is an object": (_edit(lambda f: f.attrs.__setitem__(
        "info", f.attrs["info"].replace('"params": [', '"params": {"a": [').replace('], "state"', ']}, "state"'))),
        "info"),
    "flags is a list": (_edit(_attr("steps/00000000", "flags", "[true]")), "not an object"),
    "digests hold numbers": (_edit(_attr("steps/00000001", "digests", '{"x": 1}')), "not a string"),
    "meta.data is a list": (_edit(lambda f: f.attrs.__setitem__("meta", '{"data": [1]}')), "not an object"),
    "meta.env is a string": (_edit(lambda f: f.attrs.__setitem__("meta", '{"env": "A=1"}')), "not an object"),
    "deeply nested JSON": (_edit(_attr("steps/00000000", "flags", "[" * 100000 + "]" * 100000)), "JSON"),
    "huge command": (_edit(lambda f: f.attrs.__setitem__("meta", '{"command": "' + "x" * (1 << 20) + '"}')),
                     "characters long"),
    "long setup text": (_edit(lambda f: f.attrs.__setitem__("meta", '{"setup": "' + "y" * 4000 + '"}')), None),
    "markup in names": (_edit(lambda f: (f["steps/00000002/activations/000000"].attrs.__setitem__("name", "[/]"),
                                         f.attrs.__setitem__("meta", '{"setup": "[bold]x[/x]"}'))), None),
    "missing loss": (_edit(lambda f: f.__delitem__("steps/00000001/loss")), "group /steps/00000001/loss is missing"),
    "loss of wrong shape": (_edit(_replace(f"{LAST}/loss/000000", "loss", data=np.zeros(3, np.float32))),
                            "a loss is a scalar"),
    "loss with null dataspace": (_edit(_replace(f"{LAST}/loss/000000", "loss", data=h5py.Empty("f4"))),
                                 "null"),
    "long double loss": (_edit(_replace(f"{LAST}/loss/000000", "loss", data=np.longdouble(1))), "float16/32/64"),
    "complex loss": (_edit(_replace(f"{LAST}/loss/000000", "loss", data=np.complex64(1))), "only numeric"),
    "fewer gradients": (_edit(lambda f: f.__delitem__("steps/00000001/gradients/000001")), "table lists 2"),
    "mislabelled step (name)": (_edit(lambda f: f.move("steps/00000001", "steps/1")), "8-digit"),
    "mislabelled step (attribute)": (_edit(_attr("steps/00000001", "step", 7)), "mislabelled"),
    "array attribute": (_edit(_attr("steps/00000001", "step", np.array([1, 2]))), "not a single value"),
    "tensor name is a number": (_edit(_attr("steps/00000001/loss/000000", "name", 3)), "not text"),
    "misnumbered tensors": (_edit(lambda f: f.move("steps/00000001/gradients/000001",
                                                   "steps/00000001/gradients/000007")), "misnamed"),
    "corrupt gzip chunk": (_corrupt_chunk, "reading /steps/00000002/activations/000000 failed"),
    "steps is a dataset": (_edit(lambda f: (f.__delitem__("steps"), f.create_dataset("steps", data=np.zeros(3)))),
                           "/steps is a dataset"),
    "truncated file": (_bytes(lambda d: d.__delitem__(slice(len(d) // 2, None))), "not a usable xentdbg trace"),
    "bit flips": (_bytes(_flip_bits), None),  # may be refused or read: the flips land anywhere
    "soft link": (_edit(lambda f: (f.__delitem__("steps/00000000/gradients/000000"),
                                   f.__setitem__("steps/00000000/gradients/000000",
                                                 h5py.SoftLink("/initial/params/000000")))), "soft link"),
    "external link": (_edit(_external), "external link"),
    "unknown filter": (_edit(_replace(f"{LAST}/activations/000000", "dense", data=np.zeros((16, 64), np.int32),
                                      scaleoffset=0)), "filter"),
    "interrupted step without name": (_edit(_interrupted_step), None),
    "half-written re-run": (_edit(_half_rerun), None),
    "not HDF5": (lambda p: p.write_text("hello"), "HDF5 cannot open it"),
    # Read, and shown; diff's console report (xentdbg/report/console.py) reads framework["backend"]
    # of a JaxLoop side unguarded (KeyError, exit 70) until that line uses .get().
    "framework without backend": (_edit(lambda f: f.attrs.__setitem__(
        "info", f.attrs["info"].replace('"backend": "cpu", ', ''))), None),
}


def run(args: list[str], timeout: float = 60) -> tuple[int, float, float, bool]:
    """``python -m xentdbg ARGS`` in a child: exit code, seconds, peak RSS (MB), traceback printed."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "xentdbg", *args], cwd=ROOT, stdout=out, stderr=out,
                                env={**os.environ, "COLUMNS": "120"})
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
            time.sleep(0.01)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        out.seek(0)
        text = out.read().decode(errors="replace")
    return proc.returncode, seconds, usage.ru_maxrss / 1024, "Traceback" in text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", help="write the files here (kept) instead of a temporary folder")
    parser.add_argument("--only", help="comma-separated class names")
    opts = parser.parse_args()
    folder = Path(opts.keep or tempfile.mkdtemp(prefix="hostile-traces-"))
    folder.mkdir(parents=True, exist_ok=True)
    good = valid(folder / "good.h5", seed=1)  # other values: diff finds a divergence and diagnoses it
    names = opts.only.split(",") if opts.only else list(CLASSES)
    rows, worst = [], {"exit 70": 0, "traceback": 0, "over 1 GB": 0, "over 10 s": 0}
    print("| class | command | exit | seconds | peak RSS MB |\n|---|---|---|---|---|")
    for name in names:
        build, _ = CLASSES[name]
        path = folder / (name.replace(" ", "_").replace("(", "").replace(")", "").replace("/", "_") + ".h5")
        build(path)
        for command in (["show", str(path)], ["diff", str(path), str(good)]):
            code, seconds, rss, traceback = run(command)
            worst["exit 70"] += code == 70
            worst["traceback"] += traceback
            worst["over 1 GB"] += rss > 1024
            worst["over 10 s"] += seconds > 10
            row = f"| {name} | {command[0]} | {code}{' (traceback)' if traceback else ''} | {seconds:.2f} | {rss:.0f} |"
            rows.append(row)
            print(row, flush=True)
    print("\n" + ", ".join(f"{k}: {v}" for k, v in worst.items()))
    if not opts.keep:
        shutil.rmtree(folder)
    sys.exit(1 if any(worst.values()) else 0)


if __name__ == "__main__":
    main()
