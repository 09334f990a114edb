"""Every public docstring example runs and prints what it shows."""

import doctest
import importlib

import pytest
from _optional import require

MODULES = ["fastnorm._api", "fastnorm._backward", "fastnorm._layers", "fastnorm._config", "fastnorm.torch"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    if name == "fastnorm.torch":
        require("torch", reason="torch is not installed")
    mod = importlib.import_module(name)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0, f"{res.failed} of {res.attempted} examples failed in {name}"
    assert res.attempted > 0 or name == "fastnorm._config"
