"""Coefficients (weight, bias, mean, var) that share memory with out or
with x written in place: the result is that of unshared copies."""

import numpy as np
import pytest
from _optional import require

import fastnorm


def _wb(C):
    return np.linspace(0.5, 2.0, C), np.linspace(-1.0, 1.0, C)


@pytest.mark.parametrize("nt", [1, 2, 4])
def test_weight_bias_sharing_memory_with_out(rng, nt):
    x = rng.standard_normal((4, 8, 20000)) * 3 + 1
    w0, b0 = _wb(8)
    want = fastnorm.instance_norm(x, w0.copy(), b0.copy())
    for where in ("head", "tail"):
        out = np.zeros_like(x)
        flat = out.reshape(-1)
        w, b = (flat[:8], flat[8:16]) if where == "head" else (flat[-8:], flat[-16:-8])
        w[:], b[:] = w0, b0
        y = fastnorm.instance_norm(x, weight=w, bias=b, out=out, num_threads=nt)
        assert y is out
        np.testing.assert_array_equal(y, want, err_msg=where)
    # group_norm, same rule
    want = fastnorm.group_norm(x, 2, w0.copy(), b0.copy())
    out = np.zeros_like(x)
    w, b = out.reshape(-1)[-8:], out.reshape(-1)[:8]
    w[:], b[:] = w0, b0
    np.testing.assert_array_equal(fastnorm.group_norm(x, 2, w, b, out=out, num_threads=nt), want)


@pytest.mark.parametrize("nt", [1, 2])
def test_weight_bias_sharing_memory_with_x_in_place(rng, nt):
    x = rng.standard_normal((4, 8, 20000)) * 3 + 1
    w0, b0 = _wb(8)
    x.reshape(-1)[-8:] = w0
    x.reshape(-1)[:8] = b0
    want = fastnorm.instance_norm(x.copy(), w0.copy(), b0.copy())
    y = fastnorm.instance_norm(x, x.reshape(-1)[-8:], x.reshape(-1)[:8], out=x, num_threads=nt)
    assert y is x
    np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("nt", [1, 2])
def test_normalize_mean_var_bias_sharing_memory_with_out(rng, nt):
    x = rng.standard_normal((1, 8, 40000)) * 3 + 1
    m = fastnorm.instance_moments(x)
    w0, b0 = _wb(8)
    want = fastnorm.normalize(x, m.mean.copy(), m.var.copy(), w0.copy(), b0.copy())
    out = np.zeros_like(x)
    flat = out.reshape(-1)
    mean, var, w, b = flat[:8].reshape(1, 8), flat[-8:].reshape(1, 8), flat[8:16], flat[-16:-8]
    mean[:], var[:], w[:], b[:] = m.mean, m.var, w0, b0
    y = fastnorm.normalize(x, mean, var, w, b, out=out, num_threads=nt)
    np.testing.assert_array_equal(y, want)
    # in place, the statistics stored in x itself
    x2 = x.copy()
    x2.reshape(-1)[:8] = m.mean.ravel()
    x2.reshape(-1)[-8:] = m.var.ravel()
    want = fastnorm.normalize(x2.copy(), m.mean, m.var)
    y = fastnorm.normalize(x2, x2.reshape(-1)[:8], x2.reshape(-1)[-8:], out=x2, num_threads=nt)
    np.testing.assert_array_equal(y, want)


def test_torch_weight_sharing_memory_with_out(rng):
    torch = require("torch")
    x = torch.from_numpy(rng.standard_normal((4, 8, 20000)) * 3 + 1)
    w0, b0 = (torch.from_numpy(a) for a in _wb(8))
    want = fastnorm.instance_norm(x, w0.clone(), b0.clone())
    out = torch.zeros_like(x)
    w, b = out.view(-1)[-8:], out.view(-1)[:8]
    w.copy_(w0)
    b.copy_(b0)
    y = fastnorm.instance_norm(x, w, b, out=out, num_threads=2)
    assert y is out
    assert torch.equal(y, want)
