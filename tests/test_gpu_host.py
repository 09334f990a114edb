"""Host-side logic of the CuPy backend, run without CuPy or a GPU: a minimal
stand-in for the few CuPy names the code under test touches."""

import importlib
import sys
import types

import pytest


class _Arr:
    def __init__(self, ptr, device=0, itemsize=4):
        self.data = types.SimpleNamespace(ptr=ptr)
        self.itemsize = itemsize
        self.device = device
        self.flags = types.SimpleNamespace(c_contiguous=True)
        self.copied = False

    def copy(self):
        c = _Arr(self.data.ptr + 1000, self.device)
        c.copied = True
        return c


@pytest.fixture
def gpu_backend(monkeypatch):
    fake = types.ModuleType("cupy")
    calls = []

    def shares_memory(a, b):  # exact, slow, synchronizing: must not run
        raise AssertionError("cp.shares_memory (exact overlap check) called")

    def may_share_memory(a, b):
        calls.append((a, b))
        return abs(a.data.ptr - b.data.ptr) < 100

    fake.shares_memory = shares_memory
    fake.may_share_memory = may_share_memory
    fake.ndarray = _Arr
    fake.cuda = types.SimpleNamespace(Device=lambda *a: types.SimpleNamespace(id=0))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.delitem(sys.modules, "fastnorm._gpu._backend", raising=False)
    be = importlib.import_module("fastnorm._gpu._backend")
    yield be, calls
    sys.modules.pop("fastnorm._gpu._backend", None)


def test_out_overlap_check_uses_bounds_only(gpu_backend):
    """out= that may overlap x (not the same buffer) makes x be copied, decided
    by cp.may_share_memory; the exact cp.shares_memory (20 GiB of temporaries
    and seconds per call for an (8, 64, 1024, 1024) pair) is never called."""
    be, calls = gpu_backend
    x = _Arr(1000)
    xx, out = be._prepare(x, _Arr(1050), None)  # overlapping, different start
    assert xx.copied and calls
    xx, out = be._prepare(x, _Arr(5000), None)  # disjoint
    assert xx is x
    xx, out = be._prepare(x, x, None)  # in place
    assert xx is x
    xx, out = be._prepare(x, _Arr(1000), None)  # in place: the same start and element size
    assert xx is x
    xx, out = be._prepare(_Arr(1000, itemsize=1), _Arr(1000), None)  # uint8 x under a float32 out
    assert xx.copied


def test_kernel_functions_cached_per_device_and_name(gpu_backend, monkeypatch):
    be, _ = gpu_backend
    got = []

    class Mod:
        def get_function(self, name):
            got.append(name)
            return object()

    monkeypatch.setattr(be, "_module", lambda dev, t: Mod())
    be._function.cache_clear()
    f1, f2 = be._fn("merge_chunks", "float"), be._fn("merge_chunks", "float")
    assert f1 is f2 and got == ["merge_chunks"]
