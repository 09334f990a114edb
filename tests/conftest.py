import os
import sys
import zlib

# The engine starts fewer threads than asked while other processes keep cores
# busy (FASTNORM_DYNAMIC, read once per process). The tests check thread counts
# and plans as asked, so they must not depend on the machine's load: the suite
# (and the subprocesses it starts) runs with the load-aware count off.
os.environ.setdefault("FASTNORM_DYNAMIC", "0")

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
# the repository root, last: benchmarks/ (the style network of test_torch.py)
# is importable however pytest is started, and an installed fastnorm still wins
# over the source tree (a wheel's tests, cibuildwheel)
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

# Per-test random streams are seeded from the test's node id with a stable hash
# (crc32, not hash(): Python salts str hashes per process), so a failing case is
# replayed by running the same node id again; the seed is printed on failure.
_SEED = pytest.StashKey[int]()


def node_seed(nodeid):
    """The seed of a test: the same in every process, platform and run."""
    return zlib.crc32(nodeid.encode())


def _use_seed(request):
    seed = node_seed(request.node.nodeid)
    if _SEED not in request.node.stash:
        request.node.stash[_SEED] = seed
        request.node.user_properties.append(("rng_seed", seed))
    return seed


@pytest.fixture
def rng(request):
    """A fresh, reproducible NumPy stream per test."""
    return np.random.default_rng(_use_seed(request))


@pytest.fixture
def torch_seed(request):
    """torch's global generator (tensor draws, module initialization) seeded
    per test, so the test does not depend on what ran before it."""
    from _optional import require

    torch = require("torch", reason="torch is not installed (pip install torch)")
    seed = _use_seed(request)
    torch.manual_seed(seed)
    return seed


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    rep = (yield).get_result()
    seed = item.stash.get(_SEED, None)
    if rep.failed and seed is not None:
        text = (
            f"rng seed: {seed} (crc32 of the node id, the same in every run; "
            f"replay: python -m pytest -p no:cacheprovider '{item.nodeid}'; "
            f"the stream: numpy.random.default_rng({seed}))"
        )
        if hasattr(rep.longrepr, "addsection"):
            rep.longrepr.addsection("rng seed", text)
        else:
            rep.sections.append(("rng seed", text))


# Hypothesis profiles. "ci" (default): derandomized (fixed seed), ~2,400 examples
# over the property tests per run. "long": 20x more, random seeds, for soak runs:
#     FASTNORM_HYPOTHESIS_PROFILE=long python -m pytest tests/test_properties.py
try:
    from hypothesis import HealthCheck, settings

    _common = dict(
        deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], print_blob=True
    )
    settings.register_profile("ci", max_examples=400, derandomize=True, database=None, **_common)
    settings.register_profile("long", max_examples=8000, **_common)
    settings.load_profile(os.environ.get("FASTNORM_HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # hypothesis is a test dependency; its tests skip without it
    pass
