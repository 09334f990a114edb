"""The same bits whatever the engine chooses: every thread count from 1 to 8,
every plan forced through _tuning (small planes, pipelined, read-then-apply,
waves, backward passes, streaming), and the channels-last apply kernels
against the channels-first ones; the wave plan also against the float64
oracle.  (test_isa.py checks what plan_for reports.)"""

import _reference as R
import numpy as np
import pytest
from _plans import PLAN_SETTINGS

import fastnorm

# includes planes larger than a wave share (several waves, a partial last wave)
SPLIT_SHAPES = [(1, 2, 1000, 700), (3, 5, 200, 130), (1, 1, 70001), (2, 3, 17, 18, 19), (2, 7, 300, 300)]


@pytest.mark.parametrize("shape", SPLIT_SHAPES)
@pytest.mark.parametrize("channel_axis", [1, -1])
def test_every_function_bit_identical_1_to_8_threads(shape, channel_axis):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * 3 + 10).astype(np.float32)
    if channel_axis == -1:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    C = x.shape[channel_axis]
    G = 1
    style = x[:1]
    mean, var = np.full(C, 10.0), np.full(C, 9.0)

    def all_funcs(nt):
        return [
            fastnorm.instance_norm(x, channel_axis=channel_axis, activation="silu", num_threads=nt),
            fastnorm.group_norm(x, G, channel_axis=channel_axis, num_threads=nt),
            *fastnorm.instance_stats(x, channel_axis=channel_axis, num_threads=nt),
            fastnorm.instance_moments(x, channel_axis=channel_axis, num_threads=nt).m2,
            fastnorm.normalize(x, mean, var, channel_axis=channel_axis, num_threads=nt),
            fastnorm.adain(x, style, channel_axis=channel_axis, alpha=0.7, num_threads=nt),
        ]

    ref = all_funcs(1)
    for nt in range(2, 9):
        for a, b in zip(all_funcs(nt), ref):
            np.testing.assert_array_equal(a, b)


# every activation code of the vector loops: none, relu, leaky relu with a
# slope in (0, 1] and outside it (-1.5; 2.0, where max(v * s, v), the (0, 1]
# code's form, gives another value), and silu (the activation switch's loops)
ACTS = ((None, 0.01), ("silu", 0.01), ("leaky_relu", 0.01), ("relu", 0.01), ("leaky_relu", -1.5), ("leaky_relu", 2.0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("shape", [(4, 6, 16, 16), (2, 4, 8, 8, 8), (3, 2, 130, 140), (1, 3, 50000)])
def test_every_plan_gives_the_same_bits(dtype, shape):
    """The engine chooses among plans by plane size (one C call for planes of
    one block, pipelined planes, read-then-apply planes, waves across threads,
    the normalize pass forwards or backwards); forcing each choice must not
    change a bit, with affine, groups and activations, in both layouts."""
    from fastnorm._cpu import _engine as E

    rng = np.random.default_rng(11)
    x = (rng.standard_normal(shape) * 4 + 300).astype(dtype)
    C = shape[1]
    w, b = rng.standard_normal(C), rng.standard_normal(C)

    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))

    def run():
        return (
            [
                fastnorm.instance_norm(x, w, b, activation=act, negative_slope=slope, num_threads=nt).tobytes()
                for act, slope in ACTS
                for nt in (1, 2, 3)
            ]
            + [
                fastnorm.group_norm(x, G, w, b, activation=act, negative_slope=slope, num_threads=nt).tobytes()
                for G in (1, C // 2 if C % 2 == 0 else 1)
                for act, slope in ACTS[:1] + ACTS[3:]
                for nt in (1, 3)
            ]
            + [fastnorm.instance_norm(xl, w, b, channel_axis=-1, num_threads=nt).tobytes() for nt in (1, 3)]
        )

    ref = run()
    for setting in PLAN_SETTINGS:
        old = E._tuning(**setting)
        try:
            got = run()
        finally:
            E._tuning(*old)
        assert got == ref, setting


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_wave_plan_matches_reference(dtype):
    """Planes bigger than a thread's L2 share go through the wave plan; check
    it against the float64 oracle, not only against itself."""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((1, 5, 512, 400)) * 2 + 50).astype(dtype)
    w, b = rng.standard_normal(5), rng.standard_normal(5)
    ref = R.instance_norm(x.astype(np.float64), weight=w, bias=b)
    for nt in (2, 3):
        R.assert_close(fastnorm.instance_norm(x, weight=w, bias=b, num_threads=nt), ref, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("C", [1, 3, 5, 15, 16, 17, 33, 48, 64, 65, 100, 130, 257])
def test_channels_last_apply_bits_equal_channels_first(dtype, C):
    """Channels-last normalizes with other kernels (register tiles of 16-64
    channels, a scalar tail for the rest, virtual rows for C < 16) than
    channels-first, with the same formula: given the same mean and variance
    the two layouts must agree bit for bit, for every channel count.  (The
    statistics themselves may differ in the last bit between layouts: the
    accumulation order follows the memory order.)"""
    rng = np.random.default_rng(C)
    x = (rng.standard_normal((2, C, 37, 29)) * 5 - 20).astype(dtype)
    w, b = rng.standard_normal(C), rng.standard_normal(C)
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    mean, var = rng.standard_normal((2, C)) - 20, rng.uniform(1, 30, (2, C))
    from fastnorm._cpu import _engine as E

    for nt in (1, 2):
        for act, slope in ACTS:
            kw = dict(activation=act, negative_slope=slope, num_threads=nt)
            zf = fastnorm.normalize(x, mean, var, w, b, **kw)
            zl = fastnorm.normalize(xl, mean, var, w, b, channel_axis=-1, **kw)
            np.testing.assert_array_equal(zl, np.moveaxis(zf, 1, -1), err_msg=f"{act} {slope} {nt}")
            old = E._tuning(stream_above_bytes=0)  # the streamed tiles and rows
            try:
                zs = fastnorm.normalize(xl, mean, var, w, b, channel_axis=-1, **kw)
            finally:
                E._tuning(*old)
            np.testing.assert_array_equal(zs, zl, err_msg=f"streamed {act} {slope} {nt}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_wide_channels_last_rows_give_the_tiles_bits(dtype):
    """Channels-last rows wider than a register tile at every level (C = 80,
    136: W > 64 lanes) are normalized row by row past cl_rows_above_bytes and
    tile by tile below it: the same bits, at 1-3 threads, fused and in
    waves, without and with relu and leaky relu (either slope code), with
    the float16 -> float32 pair too."""
    from fastnorm._cpu import _engine as E

    rng = np.random.default_rng(12)
    # C = 5: virtual rows of 16 rows (W = 80) and a tail of 15 rows (S = 63);
    # C = 100 and 136: rows of an odd number of vectors at x86-64-v3 and v4;
    # C = 3 (W = 48), 18, 20 and 64: below x86-64-v4 rows walked in groups of
    # rows, 18 and 20 with a last single vector (x86-64, x86-64-v3)
    cases = [(rng.standard_normal((2, 9, 7, C)) * 3 + 40).astype(dtype) for C in (3, 5, 18, 20, 64, 80, 100, 136)]
    cases.append((rng.standard_normal((3, 33, 136)) * 3 + 4).astype(np.float16))

    def run():
        out = []
        for x in cases:
            kw = {"dtype": np.float32} if x.dtype == np.float16 else {}
            for nt in (1, 2, 3):
                for act, slope in ACTS[:1] + ACTS[2:]:
                    y = fastnorm.instance_norm(
                        x, channel_axis=-1, num_threads=nt, activation=act, negative_slope=slope, **kw
                    )
                    out.append(y.tobytes())
        return out

    ref = run()
    settings = (
        dict(cl_rows_above_bytes=0),
        dict(cl_rows_above_bytes=0, wave_bytes=1 << 10),
        dict(cl_rows_above_bytes=0, stream_above_bytes=0),  # also where the output streams
    )
    for setting in settings:
        old = E._tuning(**setting)
        try:
            assert run() == ref, setting
        finally:
            E._tuning(*old)


def test_plan_rows_is_for_wide_channels_last_outputs_past_the_threshold():
    """plan_for tells where the rows path runs: channels last, float32 or
    float64 output over cl_rows_above_bytes, with or without streaming."""
    from fastnorm._cpu import _engine as E

    old = E._tuning(cl_rows_above_bytes=12 << 20)
    try:
        assert E.plan_for((1, 128, 128, 256), np.float32, channel_axis=-1)["rows"]
        assert E.plan_for((1, 160, 160, 256), np.float32, channel_axis=-1)["rows"]  # 25 MiB: streamed too
        assert E.plan_for((1, 128, 128, 128), np.float64, channel_axis=-1)["rows"]
        assert not E.plan_for((1, 64, 64, 256), np.float32, channel_axis=-1)["rows"]  # 4 MiB
        assert not E.plan_for((1, 160, 160, 256), np.float16, channel_axis=-1)["rows"]  # applied in float
        assert not E.plan_for((1, 256, 128, 128), np.float32)["rows"]  # channels first
    finally:
        E._tuning(*old)


@pytest.mark.parametrize(
    "shape, groups",
    [((3, 7, 8, 8), None), ((2, 13, 16, 16), None), ((1, 9, 5, 7), None), ((2, 12, 4, 4), 4), ((1, 6, 16, 16), 3)],
)
@pytest.mark.parametrize("activation", [None, "relu", "leaky_relu"])
def test_small_planes_in_batches_give_each_planes_own_bits(shape, groups, activation):
    # Small float32 planes are finished a batch at a time (up to 8 planes of
    # 1024 elements in all); one instance of one channel (or group) alone is
    # a batch of one.  Plane counts that leave a partial last batch, scalar
    # tails (5 x 7) and groups of several channels, with weight and bias.
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(shape) * 30 + 1000).astype(np.float32)
    C = shape[1]
    w = rng.uniform(0.5, 2.0, C).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32)
    if groups is None:
        whole = fastnorm.instance_norm(x, w, b, activation=activation, num_threads=1)
        for n in range(shape[0]):
            for c in range(C):
                one = fastnorm.instance_norm(x[n : n + 1, c : c + 1], w[c : c + 1], b[c : c + 1], activation=activation)
                assert np.array_equal(one[0, 0], whole[n, c]), (n, c)
    else:
        whole = fastnorm.group_norm(x, groups, w, b, activation=activation, num_threads=1)
        k = C // groups
        for n in range(shape[0]):
            for g in range(groups):
                s = slice(g * k, (g + 1) * k)
                one = fastnorm.group_norm(x[n : n + 1, s], 1, w[s], b[s], activation=activation)
                assert np.array_equal(one[0], whole[n, s]), (n, g)
