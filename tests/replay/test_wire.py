"""The worker protocol round-trips arrays bitwise and never unpickles."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

from xentdbg.records import StepRecord
from xentdbg.replay import ring, wire


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


# Shared-memory ring (step records of a replay) -----------------------------------

needs_memfd = pytest.mark.skipif(ring.create("probe") is None, reason="no memfd on this platform")


def ring_pair():
    fd = ring.create("test")
    return ring.RingWriter(fd), ring.RingReader(fd), fd


def ring_roundtrip(writer, reader, header, arrays):
    r, w = os.pipe()
    try:
        wire.send(w, header, arrays, ring=writer)
        os.close(w)
        return wire.recv(r, reader)
    finally:
        os.close(r)


@needs_memfd
def test_ring_roundtrips_bitwise_and_views_are_read_only():
    writer, reader, fd = ring_pair()
    arrays = [np.float32(3.5), np.array([np.nan, np.inf, -0.0], np.float32), np.arange(6, dtype=np.int64).reshape(2, 3),
              np.zeros((0, 4), np.float16), np.arange(7, dtype=np.float64)[::2]]  # strided: sent C-contiguous
    header, got = ring_roundtrip(writer, reader, {"type": "step"}, arrays)
    assert header == {"type": "step"}
    for a, b in zip(arrays, got, strict=True):
        a = np.ascontiguousarray(a) if np.ndim(a) else np.asarray(a)
        assert a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()
    with pytest.raises(ValueError, match="read-only"):
        got[1][0] = 1.0
    reader.close()


@needs_memfd
def test_ring_keeps_the_two_records_before_the_one_being_written():
    """The lockstep contract: record k is written while the coordinator holds k-1 and k-2."""
    writer, reader, fd = ring_pair()
    held = [ring_roundtrip(writer, reader, {"k": k}, [np.full(1000, k, np.float32)])[1][0] for k in range(3)]
    assert [int(h[0]) for h in held] == [0, 1, 2]
    ring_roundtrip(writer, reader, {"k": 3}, [np.full(1000, 3, np.float32)])
    assert int(held[1][0]) == 1 and int(held[2][0]) == 2  # the two before record 3 are intact
    assert int(held[0][0]) == 3  # the slot of record 0 was reused: owners must copy (StepRecord.owned)
    reader.close()


@needs_memfd
def test_ring_growth_leaves_earlier_records_intact():
    writer, reader, fd = ring_pair()
    small = ring_roundtrip(writer, reader, {}, [np.full(10, 1.0, np.float32)])[1][0]
    big = ring_roundtrip(writer, reader, {}, [np.full(100_000, 2.0, np.float32)])[1][0]  # a new, larger ring
    bigger = ring_roundtrip(writer, reader, {}, [np.full(300_000, 3.0, np.float64)])[1][0]
    assert (small == 1.0).all() and (big == 2.0).all() and (bigger == 3.0).all()
    reader.close()


@needs_memfd
def test_ring_refuses_records_outside_the_file():
    writer, reader, fd = ring_pair()
    ring_roundtrip(writer, reader, {}, [np.ones(16, np.float32)])
    spec = [(np.dtype(np.float32), (16,))]
    with pytest.raises(ValueError, match="outside the shared file"):
        reader.arrays({"offset": writer.size - 8, "size": writer.size}, spec)
    with pytest.raises(ValueError, match="beyond the shared file"):
        reader.arrays({"offset": 0, "size": writer.size * 4}, spec)
    for bad in ({"offset": "x", "size": 1}, {"size": 64}, [0, 64]):
        with pytest.raises(ValueError, match="bad shared-memory location"):
            reader.arrays(bad, spec)
    with pytest.raises(ValueError, match="without a ring"):
        r, w = os.pipe()
        wire.send(w, {}, [np.ones(4)], ring=writer)
        os.close(w)
        try:
            wire.recv(r)
        finally:
            os.close(r)
    reader.close()


def test_owned_record_is_a_writable_copy():
    view = np.ones(3, np.float32)
    view.flags.writeable = False
    rec = StepRecord(0, {"weights": [("w", view)]})
    own = rec.owned()
    own.tensors["weights"][0][1][0] = 5.0
    assert view[0] == 1.0 and own.step == 0
