"""Outputs at every offset from the input in the low address bits give the
same bits: the elementwise passes run from their end where, forward, their
stores would run just ahead of their loads (fn_base.h, fn_store_ahead)."""

import numpy as np
import pytest

import fastnorm
from fastnorm._cpu import _engine as E


def _view(buf, base_off, n, itemsize):
    """n elements of buf starting base_off bytes past a 4 KiB boundary."""
    k = ((base_off - buf.ctypes.data) % 4096) // itemsize
    return buf[k : k + n]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 4, 128, 128), (2, 3, 50, 41), (3, 5, 7, 9)])
@pytest.mark.parametrize("level", E.simd_levels())
def test_every_output_offset_gives_the_same_bits(dtype, shape, level):
    isz = np.dtype(dtype).itemsize
    n = int(np.prod(shape))
    bx = np.random.default_rng(3).standard_normal(n + 2048).astype(dtype) * 5 + 2
    by = np.empty(n + 2048, dtype)
    x = _view(bx, 64, n, isz).reshape(shape)
    old = E.configure(isa=level)
    try:
        want = {a: fastnorm.instance_norm(x.copy(), activation=a) for a in (None, "relu", "leaky_relu")}
        for d in list(range(0, 1025, 16 if isz == 4 else 8)) + [2048, 4032]:
            y = _view(by, (64 + d) % 4096, n, isz).reshape(shape)
            for a, w in want.items():
                y[...] = np.nan
                fastnorm.instance_norm(x, out=y, activation=a)
                assert y.tobytes() == w.tobytes(), (d, a)
            want_none = want[None]
            # the pipelined plan, whose statistics of the next plane and apply of this one share a loop
            told = E._tuning(small_planes=False)
            try:
                y[...] = np.nan
                fastnorm.instance_norm(x, out=y)
            finally:
                E._tuning(*told)
            assert y.tobytes() == want_none.tobytes(), d
    finally:
        E.configure(**old)
