"""Non-temporal (streaming) stores of large outputs: forced on, at every level
that has them, the same bits as normal stores at every output alignment;
the default threshold and the streaming copy of the bench ceiling."""

import numpy as np
import pytest
from _isa import LEVELS, kernels

import fastnorm


def _misaligned_like(a, shift):
    """An empty C-contiguous array shaped like a whose data start `shift`
    elements past a 64-byte boundary."""
    buf = np.empty(a.size + 16, a.dtype)
    k = (-(buf.ctypes.data // a.itemsize)) % (64 // a.itemsize) + shift
    return buf[k : k + a.size].reshape(a.shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape",
    [(2, 5, 33, 37), (3, 37, 20, 9), (2, 100, 7, 11), (1, 16, 64, 64), (2, 3, 20, 30), (1, 64, 12, 10), (3, 32, 7, 9)],
)
def test_streaming_stores_give_the_same_bits(dtype, shape):
    """Large float32/float64 outputs are written with non-temporal stores
    (channels first: the lanes before the first aligned line and after the
    last full vector stored normally; channels last: rows of whole vectors of
    at most 64 lanes into an aligned output).  Forced on for small arrays, at
    every level that has them, they must give exactly the normal stores' bits
    through every entry point, at several output alignments (shift 0: 64-byte
    aligned; 1, 3: unaligned; 16 bytes)."""
    from fastnorm._cpu import _engine as E

    streaming = [lv for lv in LEVELS if _streams_at(lv)]
    if not streaming:
        pytest.skip("no level of this CPU/build has streaming stores")
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 3 + 200).astype(dtype)
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    w, b = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    mean, var = rng.standard_normal(shape[:2]) + 200, rng.random(shape[:2]) + 0.5

    def run():
        got = []
        for shift in (0, 1, 3, 16 // x.itemsize):
            for nt in (1, 2, 3):
                o = _misaligned_like(x, shift)
                fastnorm.instance_norm(x, w, b, out=o, num_threads=nt)
                ol = _misaligned_like(xl, shift)
                fastnorm.instance_norm(xl, w, b, channel_axis=-1, out=ol, num_threads=nt)
                got += [o.tobytes(), ol.tobytes()]
            io = x.copy()  # in place: y is x
            fastnorm.instance_norm(io, w, b, out=io, num_threads=2)
            got.append(io.tobytes())
            got.append(fastnorm.group_norm(x, 1, w, b, num_threads=2).tobytes())
            got.append(fastnorm.normalize(x, mean, var, w, b, num_threads=2).tobytes())
            got.append(fastnorm.normalize(xl, mean, var, w, b, channel_axis=-1, num_threads=2).tobytes())
        return got

    with kernels(stream=False):
        ref = run()
    old = E._tuning(stream_above_bytes=0)
    try:
        for level in streaming:
            with kernels(isa=level):
                assert fastnorm._cpu._engine.plan_for(x.shape, x.dtype)["stream"]
                assert run() == ref, level
    finally:
        E._tuning(*old)


def _streams_at(level):
    from fastnorm._cpu import _engine as E

    with kernels(isa=level):
        return E.config()["streaming"]


def test_streaming_threshold_and_copy():
    """The default threshold, and the streaming copy of the bench ceiling."""
    from fastnorm._cpu import _engine as E

    level, above = E.streaming_stores()
    assert above == 20 << 20
    src = np.random.default_rng(0).standard_normal(300001)
    for above in (0, 1 << 40):
        old = E._tuning(stream_above_bytes=above)
        try:
            dst = np.zeros_like(src[1:])
            E.parallel_copy(src[1:], dst, 2)
        finally:
            E._tuning(*old)
        np.testing.assert_array_equal(dst, src[1:])
    for mode in (0, 1):
        dst = np.zeros_like(src[1:])
        E.parallel_copy(src[1:], dst, 2, mode)
        np.testing.assert_array_equal(dst, src[1:])
    with pytest.raises(ValueError, match="stream must be -1, 0 or 1, got 2"):
        E.parallel_copy(src, np.empty_like(src), 1, 2)
