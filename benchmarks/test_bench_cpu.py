"""Groups are named op|shape|layout|dtype so each group compares fastnorm, the
copy ceiling and the peers on one case."""

import pytest
from conftest import make_input

from fastnorm.bench import harness as B

CASES = [(s, lay, "float32") for s in B.STANDARD for lay in ("cf", "cl")]
CASES += [(s, lay, dt) for s in ("S1", "S6") for lay in ("cf", "cl") for dt in ("float64", "float16")]


@pytest.mark.parametrize("shape,layout,dtype", CASES, ids=[f"{s}-{l}-{d}" for s, l, d in CASES])
def test_instance_norm(benchmark, peer, nthreads, shape, layout, dtype):
    x = make_input(B.STANDARD[shape], layout, dtype)
    fn = peer.make(x, layout, nthreads)
    if fn is None:
        pytest.skip(f"{peer.name} has no {layout} {dtype} kernel")
    benchmark.group = f"instance_norm|{shape}|{layout}|{dtype}"
    benchmark.extra_info["bytes"] = 2 * x.nbytes
    benchmark(fn)


GN = [("S2", lay) for lay in ("cf", "cl")]


@pytest.mark.parametrize("shape,layout", GN)
@pytest.mark.parametrize("activation", [None, "silu"])
def test_group_norm(benchmark, peer, nthreads, shape, layout, activation):
    x = make_input(B.STANDARD[shape], layout, "float32")
    fn = peer.make(x, layout, nthreads, op="group_norm", groups=32, activation=activation)
    if fn is None:
        pytest.skip(f"{peer.name} has no group_norm {layout} kernel")
    benchmark.group = f"group_norm(32){'+' + activation if activation else ''}|{shape}|{layout}|float32"
    benchmark(fn)


def test_tiny_call(benchmark):
    import numpy as np

    import fastnorm

    x = np.random.default_rng(0).standard_normal(B.TINY).astype(np.float32)
    benchmark.group = "instance_norm|tiny|cf|float32"
    benchmark(lambda: fastnorm.instance_norm(x))
