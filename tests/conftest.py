import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
# the repository root, last: benchmarks/ (the style network of test_torch.py)
# is importable however pytest is started, and an installed fastnorm still wins
# over the source tree (a wheel's tests, cibuildwheel)
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.append(_ROOT)


@pytest.fixture
def rng(request):
    # a fresh, reproducible stream per test
    return np.random.default_rng(abs(hash(request.node.nodeid)) % (2**32))


# Hypothesis profiles. "ci" (default): derandomized (fixed seed), ~2,400 examples
# over the property tests per run. "long": 20x more, random seeds, for soak runs:
#     FASTNORM_HYPOTHESIS_PROFILE=long python -m pytest tests/test_properties.py
try:
    from hypothesis import HealthCheck, settings

    _common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                   print_blob=True)
    settings.register_profile("ci", max_examples=400, derandomize=True, database=None, **_common)
    settings.register_profile("long", max_examples=8000, **_common)
    settings.load_profile(os.environ.get("FASTNORM_HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # hypothesis is a test dependency; its tests skip without it
    pass
