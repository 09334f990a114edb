"""What the documentation promises of merged moments, and that merging
stays within it."""

import os

import numpy as np
import pytest
from _optional import require

import fastnorm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastnorm.__file__)))


def test_docs_promise_what_merge_delivers():
    from fastnorm import _api

    def words(text):
        return " ".join(text.split())

    # the README of the checkout (or sdist) these tests belong to
    readme = words(open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")).read())
    moments_doc = words(_api.Moments.__doc__)
    for text in (moments_doc, words(_api.merge_moments.__doc__), readme):
        assert "merge exactly" not in text and "exactly as if" not in text
    for text in (moments_doc, readme):
        assert "not bit for bit" in text
        assert "2e-15" in text and "1e-13 + 3e-16" in text
    assert "Ctrl-C" in readme and "takes effect when the call returns" in readme


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mu", [0.0, 1e3, 1e6])
def test_merge_within_the_documented_bound(rng, dtype, mu):
    # the bound the docs state: mean within 2e-15 (|mean| + std), m2 within a
    # relative 1e-13 + 3e-16 |mean| / std of the whole array's moments
    for _ in range(40):
        H, W = int(rng.integers(2, 1500)), int(rng.integers(1, 120))
        x = ((rng.standard_normal((1, 2, H, W)) + mu) * 10.0 ** rng.uniform(-3, 3)).astype(dtype)
        cuts = np.sort(rng.choice(np.arange(1, H), size=min(int(rng.integers(1, 10)), H - 1), replace=False))
        m = None
        for part in np.split(x, cuts, axis=2):
            mp = fastnorm.instance_moments(part)
            m = mp if m is None else m.merge(mp)
        w = fastnorm.instance_moments(x)
        std = np.sqrt(w.m2 / w.count)
        assert (np.abs(m.mean - w.mean) <= 2e-15 * (np.abs(w.mean) + std)).all()
        assert (np.abs(m.m2 - w.m2) <= (1e-13 + 3e-16 * np.abs(w.mean) / std) * w.m2).all()
        np.testing.assert_array_equal(m.count, w.count)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_merged_count_stays_exact_beside_a_non_finite_mean(bad):
    x = np.array([[[1.0, 2.0, bad, 4.0], [5.0, 6.0, 7.0, 8.0]]])
    m = fastnorm.merge_moments(fastnorm.instance_moments(x[..., :2]), fastnorm.instance_moments(x[..., 2:]))
    assert np.array_equal(m.count, [[4.0, 4.0]]) and m.count.dtype == np.float64
    assert not np.isfinite(m.mean[0, 0]) and m.mean[0, 1] == 6.5


def test_moments_of_two_array_types_are_refused_by_name():
    torch = require("torch")
    x = np.random.default_rng(0).random((1, 2, 3, 4))
    with pytest.raises(TypeError, match=r"one array type, got numpy \(a\) and torch \(b\)"):
        fastnorm.merge_moments(fastnorm.instance_moments(x), fastnorm.instance_moments(torch.from_numpy(x)))
