"""setup.py's FASTNORM_TARGETS switch: the kernel targets it keeps, in the
build's order, and a clear error for a name the build does not have (read
from setup.py's source: importing it would run the build)."""

import ast
import os

import pytest

SETUP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "setup.py")

TARGETS = [
    ("x86_64_v4", "x86-64-v4", ["-march=x86-64-v4", "-mprefer-vector-width=512"]),
    ("x86_64_v3", "x86-64-v3", ["-march=x86-64-v3"]),
    ("x86_64_fma", "x86-64", ["-march=x86-64", "-mfma"]),
    ("x86_64", "x86-64", ["-march=x86-64", "-DFN_FUSED=0"]),
]


@pytest.fixture(scope="module")
def selected_targets():
    if not os.path.exists(SETUP):
        pytest.skip("needs the source tree's setup.py")
    tree = ast.parse(open(SETUP).read())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "selected_targets")
    ns = {}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), SETUP, "exec"), ns)
    return ns["selected_targets"]


@pytest.mark.parametrize("value", [None, "", " , "])
def test_unset_keeps_every_target(selected_targets, value):
    assert selected_targets(TARGETS, value) == TARGETS


def test_listed_targets_are_kept_in_the_builds_order(selected_targets):
    kept = selected_targets(TARGETS, " x86_64 , x86_64_v3")
    assert [t[0] for t in kept] == ["x86_64_v3", "x86_64"]
    assert kept[0] is TARGETS[1] and kept[1] is TARGETS[3]


def test_unknown_target_names_the_value_and_the_choices(selected_targets):
    with pytest.raises(SystemExit, match=r"FASTNORM_TARGETS.*'avx2'.*x86_64_v4.*x86_64_v3.*x86_64_fma"):
        selected_targets(TARGETS, "x86_64_v3,avx2")
