"""pytest-benchmark suite. Peers come in through a parametrized fixture and skip
when not installed. Smoke run (CI): pytest benchmarks --benchmark-disable
Full run: pytest benchmarks --benchmark-only --benchmark-group-by=group"""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastnorm.bench import harness as B
from fastnorm.bench import peers as P


def pytest_addoption(parser):
    parser.addoption("--fn-threads", type=int, default=None, help="OpenMP threads for every case")


@pytest.fixture(scope="session")
def nthreads(request):
    from fastnorm._cpu import _engine as E

    return request.config.getoption("--fn-threads") or E.default_threads()


PEER_NAMES = [p.name for p in P.PEERS]


@pytest.fixture(params=PEER_NAMES)
def peer(request):
    p = next(p for p in P.PEERS if p.name == request.param)
    if not p.available():
        pytest.skip(f"{p.name} is not installed")
    # torch.compile builds C++ for every case (seconds each): a smoke run
    # (--benchmark-disable) compiles one case of each test
    if p.name == "torch_compile" and request.config.getoption("benchmark_disable"):
        case = request.node.callspec.params
        if case.get("shape") != "S3" or case.get("layout") != "cf" or case.get("dtype", "float32") != "float32":
            pytest.skip("torch_compile: a smoke run compiles S3 channels-first float32 only")
    return p


def make_input(shape, layout, dtype):
    full = shape if layout == "cf" else B._cl_shape(shape)
    return (1.0 + np.random.default_rng(0).standard_normal(full)).astype(B.DTYPES[dtype])
