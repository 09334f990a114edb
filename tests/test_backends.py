"""The backend contract (fastnorm._backends): every backend module provides
every hook of its protocol, with the protocol's parameters; the dispatch
table, the library detection and the host copy are the only ones."""

import importlib
import importlib.util
import inspect
import os
import re

import numpy as np
import pytest
from _optional import require

import fastnorm
from fastnorm import _backends as B

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _hooks(proto):
    return [n for n, v in vars(proto).items() if not n.startswith("_") and (callable(v) or isinstance(v, property))]


def _load(lib):
    needs = {"cupy": "cupy", "torch": "torch", "dask": "dask.array"}.get(lib)
    if needs:
        require(needs, reason=f"{needs} is not installed")
    if lib == "cupy":
        try:
            return B.module(lib)
        except Exception as e:  # CuPy without a CUDA runtime
            pytest.skip(f"the CuPy backend does not import here: {e}")
    return B.module(lib)


@pytest.mark.parametrize("lib", sorted(B.MODULES))
def test_backend_modules_provide_every_hook(lib):
    if lib == "cupy" and importlib.util.find_spec("cupy") is None:
        # no CuPy here: the real CuPy backend module, imported against the emulator's stand-in
        from gpu_emu import fakecupy

        with fakecupy.installed() as be:
            _check_hooks("cupy", be)
        return
    _check_hooks(lib, _load(lib))


def _check_hooks(lib, be):
    proto = B.InteropBackend if lib in B.INTEROP else B.ComputeBackend
    assert isinstance(be, proto)
    for name in _hooks(proto):
        member = getattr(proto, name)
        if isinstance(member, property):
            assert getattr(be, name) is not None
            continue
        want = [p for p in inspect.signature(member).parameters if p != "self"]
        got = list(inspect.signature(getattr(be, name)).parameters)
        assert got[: len(want)] == want, (lib, name, got, want)
        # anything past the protocol's parameters must be optional
        extra = list(inspect.signature(getattr(be, name)).parameters.values())[len(want) :]
        assert all(p.default is not p.empty for p in extra), (lib, name)


def test_protocols_name_the_primitives():
    assert set(_hooks(B.ComputeBackend)) == {
        "xp",
        "ARRAY_TYPE",
        "ARRAY_NAME",
        "norm",
        "triples",
        "moments",
        "apply",
        "backward",
    }
    assert set(_hooks(B.InteropBackend)) == {"ARRAY_TYPE", "call"}


def test_library_and_dispatch():
    assert B.library(np.zeros(3)) == "numpy"
    assert B.library([1.0]) == "builtins"
    lib, be = B.for_array([[[1.0]]])
    assert lib == "numpy" and be is B.module("numpy")
    assert B.array_module(np.zeros(2)) is np
    torch = require("torch", reason="torch is not installed")
    with pytest.raises(TypeError, match=r"x must be an array of floats .* got torch\.Size"):
        B.for_array(torch.Size([1, 2, 3]))
    assert B.array_module(torch.zeros(1)) is torch
    h = B.to_host(torch.ones(3, dtype=torch.bfloat16))
    assert h.dtype == np.float32 and (h == 1).all()


def test_one_library_detection_in_the_package():
    """type(x).__module__ is read in fastnorm._backends only (it was read in
    seven places); the other modules ask _backends.library."""
    hits = []
    for dirpath, _, files in os.walk(os.path.join(ROOT, "fastnorm")):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                if re.search(r"\.__module__", open(path).read()) and not path.endswith("_backends.py"):
                    hits.append(os.path.relpath(path, ROOT))
    assert not [h for h in hits if "bench" not in h], hits


def test_every_public_function_dispatches_interop_arrays_from_its_first_line():
    """Each public function hands a layout= call or a torch tensor / Dask
    array to _dispatch with locals() before anything else is bound (so every
    argument, and only the arguments, reach the layout mapping and the
    interop backend); instance_norm and group_norm first offer a plain
    tensor to the torch short path, with locals() too."""
    from fastnorm import _api

    for name in ("instance_norm", "group_norm", "instance_stats", "instance_moments", "normalize", "adain"):
        fn = getattr(_api, name)
        src = inspect.getsource(fn)
        body = src.split('"""', 2)[2].strip().splitlines()
        first = next(iter(inspect.signature(fn).parameters))
        if name in ("instance_norm", "group_norm"):
            assert body[0].strip() == f"if type({first}) is _TENSOR and layout is None:", name
            assert body[1].strip() == f"return _short_or_dispatch({name}, locals())", name
            body = body[2:]
        assert body[0].strip() == (
            f"if layout is not None or (type({first}) is not _ndarray and B.library({first}) in B.INTEROP):"
        ), name
        assert body[1].strip() == f"return _dispatch({name}, locals())", name
    assert fastnorm.instance_norm is _api.instance_norm
