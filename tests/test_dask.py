"""Dask arrays: lazy results equal to one in-memory call, on a 2-process LocalCluster."""

import numpy as np
import pytest
from _optional import require

da = require("dask.array", reason="dask is not installed (pip install 'dask[array]' distributed)")
distributed = require("distributed", reason="distributed is not installed")

import fastnorm  # noqa: E402


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit="1GiB"
    )
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


X = (np.random.default_rng(0).standard_normal((4, 6, 36, 40)) * 2 + 5).astype(np.float32)
CHUNKS = [(4, 6, 36, 40), (2, 3, 36, 40), (1, 1, 36, 40), (4, 6, 9, 40), (3, 4, 11, 13), (1, 2, 7, 6)]
# hundreds of tiny chunks: scheduling them takes most of a minute
TINY = (1, 2, 7, 6)


def chunk_params(chunks):
    return [pytest.param(c, id=str(c), marks=pytest.mark.slow if c == TINY else ()) for c in chunks]


@pytest.mark.parametrize("chunks", chunk_params(CHUNKS))
@pytest.mark.parametrize("channel_axis", [1, -1])
def test_instance_norm_any_chunking(client, chunks, channel_axis):
    x = X if channel_axis == 1 else np.ascontiguousarray(np.moveaxis(X, 1, -1))
    ch = chunks if channel_axis == 1 else (chunks[0], chunks[2], chunks[3], chunks[1])
    dx = da.from_array(x, chunks=ch)
    w = np.linspace(0.5, 2, 6)
    b = np.linspace(-1, 1, 6)
    y = fastnorm.instance_norm(dx, w, b, channel_axis=channel_axis, activation="leaky_relu", negative_slope=0.2)
    assert isinstance(y, da.Array)
    want = fastnorm.instance_norm(x, w, b, channel_axis=channel_axis, activation="leaky_relu", negative_slope=0.2)
    np.testing.assert_allclose(y.compute(), want, atol=2e-6, rtol=1e-6)
    mean, var = fastnorm.instance_stats(dx, channel_axis=channel_axis)
    assert isinstance(mean, da.Array)
    m0, v0 = fastnorm.instance_stats(x, channel_axis=channel_axis)
    np.testing.assert_allclose(mean.compute(), m0, rtol=1e-6)
    np.testing.assert_allclose(var.compute(), v0, rtol=1e-5)


@pytest.mark.parametrize("chunks", chunk_params(CHUNKS[1:]))
def test_other_functions(client, chunks):
    dx = da.from_array(X, chunks=chunks)
    np.testing.assert_allclose(fastnorm.group_norm(dx, 3).compute(), fastnorm.group_norm(X, 3), atol=2e-6)
    np.testing.assert_allclose(fastnorm.group_norm(dx, 1).compute(), fastnorm.group_norm(X, 1), atol=2e-6)
    m = fastnorm.instance_moments(dx)
    m0 = fastnorm.instance_moments(X)
    np.testing.assert_allclose(m.mean.compute(), m0.mean, rtol=1e-12)
    np.testing.assert_allclose(m.m2.compute(), m0.m2, rtol=1e-10)
    mean, var = X.mean((2, 3)), X.var((2, 3))
    np.testing.assert_allclose(fastnorm.normalize(dx, mean, var).compute(), fastnorm.normalize(X, mean, var), atol=1e-6)
    style = X[:1] * 0.5 - 2
    np.testing.assert_allclose(
        fastnorm.adain(dx, style, alpha=0.7).compute(), fastnorm.adain(X, style, alpha=0.7), atol=2e-6
    )
    np.testing.assert_allclose(
        fastnorm.adain(dx, da.from_array(style, chunks=(1, 2, 9, 9))).compute(), fastnorm.adain(X, style), atol=2e-6
    )


def _load(path, block_info=None):
    loc = block_info[None]["array-location"]
    return np.load(path, mmap_mode="r")[tuple(slice(a, b) for a, b in loc)]


def npy_chunks(path, chunks):
    """A lazy dask array over a .npy file: every task reads only its own chunk."""
    head = np.load(path, mmap_mode="r")
    return da.map_blocks(
        _load,
        path,
        chunks=da.core.normalize_chunks(chunks, head.shape),
        dtype=head.dtype,
        meta=np.empty((0,) * head.ndim, head.dtype),
    )


@pytest.mark.slow
def test_larger_than_worker_memory(client, tmp_path):
    """A 1.5 GiB array normalized on workers with a 1 GiB memory limit each, from a .npy file."""
    if not hasattr(np.lib.format, "open_memmap"):
        pytest.skip("no memmap")
    path = tmp_path / "big.npy"
    shape = (1, 3, 12288, 10240)  # 1.4 GiB float32
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
    rng = np.random.default_rng(1)
    for i in range(0, shape[2], 2048):
        mm[:, :, i : i + 2048] = rng.standard_normal((1, 3, 2048, shape[3]), dtype=np.float32) + 7
    mm.flush()
    del mm
    # chunks of 60 MiB: a worker holds a few blocks and their outputs at once
    src = npy_chunks(str(path), chunks=(1, 3, 512, 10240))
    y = fastnorm.instance_norm(src)
    stats = da.stack([y.mean(axis=(0, 2, 3)), y.std(axis=(0, 2, 3))]).compute()
    np.testing.assert_allclose(stats[0], 0, atol=1e-4)
    np.testing.assert_allclose(stats[1], 1, atol=1e-4)


def test_dask_refusals_as_eager():
    """The Dask layer refuses what the eager calls refuse, when the graph is
    built: a backward with x of another kind or of an integer dtype,
    statistics of a non-real dtype (a complex mean lost its imaginary part),
    layout= on unknown chunk sizes."""
    x = np.ones((2, 3, 4), np.float32)
    with pytest.raises(TypeError, match=r"x must be the same kind of array as grad_out"):
        fastnorm.instance_norm_backward(da.ones((2, 3, 4), dtype=np.float32), x)
    xi = da.from_array(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    with pytest.raises(TypeError, match=r"integer inputs have no gradient"):
        fastnorm.instance_norm_backward(xi, xi, channel_axis=1)
    for bad in (np.full(3, 1 + 5j), np.full(3, True), np.array(["a", "b", "c"])):
        with pytest.raises(TypeError, match=r"mean must have a real dtype"):
            fastnorm.normalize(da.ones((2, 3, 4)), da.from_array(bad), np.ones(3))
        with pytest.raises(TypeError, match=r"var must have a real dtype"):
            fastnorm.normalize(da.ones((2, 3, 4)), np.zeros(3), da.from_array(bad))
    xu = da.from_array(np.ones((4, 3, 5, 5), np.float32))[da.from_array(np.array([1, 0, 1, 1], bool))]
    with pytest.raises(ValueError, match=r"x has unknown chunk sizes"):
        fastnorm.instance_norm(xu, layout="NCHW")
    with pytest.raises(ValueError, match=r"style has unknown chunk sizes"):
        fastnorm.adain(da.ones((2, 3, 4, 4)), xu)


@pytest.mark.parametrize("shape", [(0, 3, 4), (2, 0, 4)])
def test_dask_empty_batch_or_channels(shape):
    """No planes: the eager calls' empty results (the reductions had no
    blocks to merge, the backward divided by a group of 0 channels)."""
    e, de = np.zeros(shape), da.zeros(shape)
    for lazy, eager in zip(fastnorm.instance_stats(de), fastnorm.instance_stats(e)):
        assert lazy.compute().shape == eager.shape
    assert fastnorm.instance_moments(de).count.compute().shape == fastnorm.instance_moments(e).count.shape
    for lazy, eager in zip(fastnorm.instance_norm_backward(de, de), fastnorm.instance_norm_backward(e, e)):
        got = lazy.compute()
        assert got.shape == eager.shape and got.dtype == eager.dtype
        np.testing.assert_array_equal(got, eager)
    assert fastnorm.adain(de, de).compute().shape == shape


def test_dask_errors():
    dx = da.from_array(X, chunks=(2, 3, 36, 40))
    with pytest.raises(TypeError, match="out"):
        fastnorm.instance_norm(dx, out=np.empty_like(X))
    with pytest.raises(ValueError, match="channel_axis"):
        fastnorm.instance_norm(dx, channel_axis=2)
    with pytest.raises(TypeError, match="x"):
        fastnorm.instance_norm(dx.astype(bool))
    with pytest.raises(ValueError, match="num_groups"):
        fastnorm.group_norm(dx, 4)


@pytest.mark.parametrize("dtype", [np.float64, np.int64])
def test_split_planes_read_x_as_the_output_type_loads(rng, dtype):
    """Planes split over blocks: the statistics are of the values the output
    type's kernels load, as the eager call's (int64 and float64 data into
    float32 read as x.astype(float32)); they were of the exact values, 0.4
    apart from the eager call on int64 data near 2**30."""
    if dtype == np.int64:
        x = (2**30 + rng.integers(0, 256, (2, 3, 50, 2))).astype(np.int64)
    else:
        x = 1000.0 + 1e-3 * rng.standard_normal((2, 3, 50, 2))
    s = rng.standard_normal((2, 3, 50, 2))
    dx, ds = da.from_array(x, chunks=(1, 3, 25, 2)), da.from_array(s, chunks=(1, 3, 25, 2))
    for lazy, eager in (
        (fastnorm.instance_norm(dx, dtype=np.float32), fastnorm.instance_norm(x, dtype=np.float32)),
        (fastnorm.group_norm(dx, 3, dtype=np.float32), fastnorm.group_norm(x, 3, dtype=np.float32)),
        (fastnorm.adain(dx, ds, dtype=np.float32), fastnorm.adain(x, s, dtype=np.float32)),
    ):
        # the split planes merge their blocks in another order: equal up to
        # the rounding of the merged statistics
        np.testing.assert_allclose(lazy.compute(scheduler="synchronous"), eager, rtol=0, atol=1e-6)


def test_cupy_chunks_use_gpu(client):
    cp = require("cupy", reason="CuPy is not installed")
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA GPU")
    except Exception:
        pytest.skip("no CUDA GPU")
    dx = da.from_array(cp.asarray(X), chunks=(2, 3, 12, 40), asarray=False)
    y = fastnorm.instance_norm(dx).compute(scheduler="threads")
    assert isinstance(y, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(y), fastnorm.instance_norm(X), atol=2e-6)
    # an affine (NumPy weight / bias) and a NumPy style with CuPy chunks
    w, b = np.linspace(0.5, 2, X.shape[1]), np.linspace(-1, 1, X.shape[1])
    y = fastnorm.instance_norm(dx, w, b).compute(scheduler="threads")
    np.testing.assert_allclose(cp.asnumpy(y), fastnorm.instance_norm(X, w, b), atol=1e-5)
    y = fastnorm.adain(dx, X[:1] * 2 + 1).compute(scheduler="threads")
    np.testing.assert_allclose(cp.asnumpy(y), fastnorm.adain(X, X[:1] * 2 + 1), atol=1e-5)
