"""Memory: no RSS growth over many calls, returning or raising, and one plane
larger than 2**31 elements (marker bigmem)."""

import os

import numpy as np
import pytest

import fastnorm


def _rss_mib():
    if os.environ.get("FASTNORM_UNDER_ASAN"):
        pytest.skip("AddressSanitizer's quarantine holds freed memory: RSS does not measure leaks there")
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        pytest.skip("RSS needs /proc (Linux)")


def test_no_memory_growth_over_many_calls():
    x = np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(np.float32)
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    w = np.ones(4)
    for _ in range(2000):
        fastnorm.instance_norm(x)
        fastnorm.instance_norm(xl, w, channel_axis=-1)
        fastnorm.group_norm(x, 2)
        fastnorm.instance_stats(x)
    before = _rss_mib()
    for _ in range(12500):  # 50,000 calls
        fastnorm.instance_norm(x)
        fastnorm.instance_norm(xl, w, channel_axis=-1)
        fastnorm.group_norm(x, 2)
        fastnorm.instance_stats(x)
    grown = _rss_mib() - before
    assert grown < 4, f"RSS grew {grown:.1f} MiB over 50,000 calls"


def test_no_memory_growth_over_raising_calls():
    x = np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(np.float32)
    out = np.empty_like(x)
    bad = [
        lambda: fastnorm.instance_norm(x, eps=-1, out=out),
        lambda: fastnorm.instance_norm(x > 0),
        lambda: fastnorm.group_norm(x, 3),
        lambda: fastnorm.normalize(x, np.zeros(3), np.ones(4)),
        lambda: fastnorm.instance_norm(x, np.ones(5)),
    ]
    for _ in range(200):
        for f in bad:
            with pytest.raises((TypeError, ValueError)):
                f()
    before = _rss_mib()
    for _ in range(1000):  # 5,000 raising calls
        for f in bad:
            try:
                f()
            except (TypeError, ValueError):
                pass
    grown = _rss_mib() - before
    assert grown < 4, f"RSS grew {grown:.1f} MiB over 5,000 raising calls"


# ------------------------------------------------------------------------ size
def _mem_available_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


@pytest.mark.slow
@pytest.mark.bigmem
def test_plane_larger_than_2_31_elements():
    """One float16 plane of 2**31 + 2**16 elements (4 GiB): statistics and a
    normalized sample match the float64 values of the repeating pattern."""
    if _mem_available_gib() < 14:
        pytest.skip("needs ~14 GiB of free memory")
    L = 2**31 + 2**16
    pattern = (np.random.default_rng(5).standard_normal(2**16) * 2 + 3).astype(np.float16)
    x = np.empty((1, 1, L), np.float16)
    xv = x.reshape(-1, 2**16)
    xv[...] = pattern
    pm = pattern.astype(np.float64).mean()
    pv = pattern.astype(np.float64).var()
    m = fastnorm.instance_moments(x)
    assert m.count[0, 0] == L
    np.testing.assert_allclose(m.mean[0, 0], pm, rtol=1e-12)
    np.testing.assert_allclose(m.var[0, 0], pv, rtol=1e-10)
    # channels last: the same memory as (1, L, 1)
    ml = fastnorm.instance_moments(x.reshape(1, L, 1), channel_axis=-1)
    np.testing.assert_allclose(ml.mean[0, 0], pm, rtol=1e-12)
    np.testing.assert_allclose(ml.var[0, 0], pv, rtol=1e-10)
    fastnorm.instance_norm(x, out=x)  # in place: no second 4 GiB buffer
    idx = np.array([0, 1, 2**31 - 1, 2**31, L - 1])
    want = ((pattern[idx % 2**16].astype(np.float64) - pm) / np.sqrt(pv + 1e-5)).astype(np.float16)
    np.testing.assert_allclose(x[0, 0, idx].astype(np.float64), want.astype(np.float64), rtol=2e-3, atol=2e-3)
