"""Optional dependencies in tests.

`require(name)` imports an optional module or skips the calling test (or
module) with the reason. pytest.importorskip skips only a module that is
missing; a module that is installed but broken (a dask release beside an
incompatible distributed raised ImportError from inside its own imports)
would be a collection error. Here any failure to import is a skip whose
reason is that failure, so a broken optional library skips its tests and
never takes the run down.
"""

import importlib

import pytest


def require(name, reason=None):
    """The module `name`, or skip with why it could not be imported."""
    try:
        return importlib.import_module(name)
    except Exception as exc:  # missing, or installed but broken
        why = f"{name} could not be imported: {type(exc).__name__}: {exc}"
        if reason:
            why = f"{reason} ({why})"
        pytest.skip(why, allow_module_level=True)
