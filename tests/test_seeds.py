"""The per-test random streams (conftest.py's rng and torch_seed fixtures):
seeded from the node id with a stable hash, so a failing case replays in
another process, and the seed printed with the failure."""

import os
import re
import shutil
import subprocess
import sys
import zlib

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

_INNER = """
def test_draws_and_fails(rng):
    print("drew", rng.integers(2**62))
    assert False


def test_draws_and_passes(rng):
    print("drew", rng.integers(2**62))


def test_fails_without_rng():
    assert False
"""


def _run_inner(tmp_path, hashseed):
    d = tmp_path / f"run{hashseed}"
    d.mkdir()
    shutil.copy(os.path.join(HERE, "conftest.py"), d / "conftest.py")
    (d / "test_inner.py").write_text(_INNER)
    env = dict(os.environ, PYTHONHASHSEED=str(hashseed))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-s",
            f"--rootdir={d}",
            f"--junitxml={d / 'junit.xml'}",
            "test_inner.py",
        ],
        cwd=d,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1, r.stdout + r.stderr  # two failures, nothing else wrong
    return r.stdout, (d / "junit.xml").read_text()


def test_rng_is_seeded_from_a_stable_hash_of_the_node_id(rng, request):
    want = np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
    assert rng.integers(2**62) == want.integers(2**62)


@pytest.mark.slow  # two pytest runs in subprocesses
def test_seed_is_the_same_in_every_process_and_printed_on_failure(tmp_path):
    """Two processes with different string-hash salts draw the same numbers;
    the failing test that used rng names its seed, the others do not."""
    runs = [_run_inner(tmp_path, hashseed) for hashseed in (1, 2)]
    seed = zlib.crc32(b"test_inner.py::test_draws_and_fails")
    passing_seed = zlib.crc32(b"test_inner.py::test_draws_and_passes")
    drawn = []
    for out, junit in runs:
        assert out.count("rng seed:") == 1, out
        assert f"rng seed: {seed} " in out and "test_inner.py::test_draws_and_fails" in out
        assert f"numpy.random.default_rng({seed})" in out
        drawn.append(re.findall(r"drew (\d+)", out))
        # every test that used the stream records its seed in the JUnit XML
        assert f'name="rng_seed" value="{seed}"' in junit
        assert f'name="rng_seed" value="{passing_seed}"' in junit
        assert junit.count('name="rng_seed"') == 2
    assert drawn[0] == drawn[1] and len(drawn[0]) == 2
    assert sorted(int(v) for v in drawn[0]) == sorted(
        int(np.random.default_rng(s).integers(2**62)) for s in (seed, passing_seed)
    )
