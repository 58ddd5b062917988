"""The worker protocol round-trips arrays bitwise and never unpickles."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

from xentdbg.records import StepRecord
from xentdbg.replay import wire


def roundtrip(header, arrays):
    r, w = os.pipe()
    try:
        wire.send(w, header, arrays)
        os.close(w)
        return wire.recv(r)
    finally:
        os.close(r)


def test_arrays_roundtrip_bitwise_including_scalars_and_nonfinite():
    arrays = [np.float32(3.5), np.array([np.nan, np.inf, -0.0], np.float32), np.arange(6, dtype=np.int64).reshape(2, 3),
              np.zeros((0, 4), np.float16)]
    header, got = roundtrip({"type": "x", "n": 1}, arrays)
    assert header == {"type": "x", "n": 1}
    for a, b in zip(arrays, got, strict=True):
        a = np.asarray(a)
        assert a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def test_step_record_roundtrip():
    rec = StepRecord(3, {"loss": [("loss", np.float32(1.5))], "gradients": [("w", np.ones((2, 2), np.float32))]},
                     flags={"bn": True}, digests={"x": "ab"})
    back = StepRecord.from_wire(*roundtrip(*rec.to_wire()))
    assert back.step == 3 and back.loss == 1.5 and back.flags == {"bn": True}
    assert back.names("gradients") == ["w"]


def test_object_dtype_is_refused():
    header = json.dumps({"type": "x", "arrays": [["|O", [1]]]}).encode()
    r, w = os.pipe()
    os.write(w, struct.pack("<Q", len(header)) + header + b"\0" * 8)
    os.close(w)
    with pytest.raises(ValueError, match="object arrays"):
        wire.recv(r)
    os.close(r)


def test_truncated_stream_raises_channel_closed():
    r, w = os.pipe()
    os.write(w, struct.pack("<Q", 100) + b"{}")
    os.close(w)
    with pytest.raises(wire.ChannelClosed):
        wire.recv(r)
    os.close(r)
