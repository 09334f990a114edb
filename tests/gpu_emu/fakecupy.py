"""A stand-in for the few CuPy names fastnorm's GPU backend uses, for tests on
machines without a GPU: arrays are NumPy arrays (an ndarray subclass whose
type reports module "cupy", so fastnorm dispatches them to the GPU backend),
and ``RawModule`` builds kernels.cu with the host C++ compiler against
fnemu.h (each CUDA thread a fiber, blocks one after another).

Strict where a real GPU would go wrong silently: every kernel argument must
have the exact type of the kernel's parameter (np.int64 for long long,
np.int32 for int, np.float64 for double, an array of the pointee's dtype or a
null np.uint64 for a pointer); every array argument must live on the current
device, and so must the module's function; grid, block and shared memory are
checked against the device limits (LIMITS, overridable) and the kernel's
__launch_bounds__; arrays carry guard bytes checked after every launch, and
fresh ones (``empty``) hold 0xff bytes (NaN).  Every launch is recorded in
LAUNCHES.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SHIM = os.path.join(HERE, "fnemu.h")
CXX = os.environ.get("CXX") or shutil.which("g++")

float16, float32, float64 = np.float16, np.float32, np.float64
int32, int64, uint64 = np.int32, np.int64, np.uint64
uint8, int8, uint16, int16, uint32 = np.uint8, np.int8, np.uint16, np.int16, np.uint32
nan = np.nan
NUM_DEVICES = 2
LIMITS = {"grid_x": 2**31 - 1, "grid_yz": 65535, "block_xy": 1024, "block_z": 64, "threads": 1024, "shared": 48 * 1024}
LAUNCHES = []  # a Launch per kernel launch
_GUARD = 256
_local = threading.local()
_lock = threading.Lock()


# ------------------------------------------------------------------ devices
def _current():
    st = getattr(_local, "stack", None)
    return st[-1] if st else 0


class Device:
    def __init__(self, device=None):
        self.id = _current() if device is None else int(device)
        if not 0 <= self.id < NUM_DEVICES:
            raise ValueError(f"invalid device {self.id} (the fake has {NUM_DEVICES})")

    def __enter__(self):
        if not hasattr(_local, "stack"):
            _local.stack = []
        _local.stack.append(self.id)
        return self

    def __exit__(self, *exc):
        _local.stack.pop()

    def use(self):
        if not hasattr(_local, "stack"):
            _local.stack = []
        _local.stack[:] = [self.id]

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(("fake-cuda-device", self.id))

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


# ------------------------------------------------------------------- arrays
_GUARDS = {}  # id(buffer) -> buffer, start, end of the data


def _alloc(shape, dtype, fill=0xFF):
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list)) else (shape,)))
    n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buf = np.full(n + 3 * _GUARD, 0xA5, np.uint8)
    start = (-buf.ctypes.data) % _GUARD + _GUARD  # 256-byte aligned, as CuPy's pool
    buf[start : start + n] = fill
    _GUARDS[id(buf)] = (buf, start, start + n)
    a = buf[start : start + n].view(dtype).reshape(shape).view(ndarray)
    a._dev = _current()
    return a


def _check_guards(a):
    root = a
    while isinstance(getattr(root, "base", None), np.ndarray):
        root = root.base
    g = _GUARDS.get(id(root))
    if g is None or g[0] is not root:
        return
    buf, s, e = g
    if (buf[:s] != 0xA5).any() or (buf[e:] != 0xA5).any():
        raise RuntimeError("a kernel wrote outside an array (guard bytes changed)")


class Launch(types.SimpleNamespace):
    """name, grid, block, shared_mem, device; threads (run) and loading (those
    that loaded at least one 16-bit value: lane activity of 16-bit kernels)."""


class _Mem:
    __slots__ = ("ptr",)

    def __init__(self, ptr):
        self.ptr = ptr


class ndarray(np.ndarray):
    """A NumPy array that says it lives on a (fake) CUDA device."""

    def __array_finalize__(self, obj):
        self._dev = getattr(obj, "_dev", _current())

    @property
    def data(self):
        return _Mem(self.ctypes.data)

    @property
    def device(self):
        return Device(self._dev)

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kw):
        def plain(a):
            if isinstance(a, ndarray):
                return a.view(np.ndarray)
            if isinstance(a, np.ndarray) and a.ndim > 0:  # as CuPy: no implicit host arrays
                raise TypeError(f"Unsupported type {type(a)} (a host array in a CuPy operation)")
            return a

        args = [plain(a) for a in inputs]
        if out is not None:
            kw["out"] = tuple(plain(o) for o in out)
        r = getattr(ufunc, method)(*args, **kw)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(r)

    def get(self, stream=None):
        return np.array(self.view(np.ndarray), copy=True)

    def copy(self, order="C"):
        a = _alloc(self.shape, self.dtype)  # on the current device, as CuPy's copy
        a.view(np.ndarray)[...] = self.view(np.ndarray)
        return a

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        if not copy and np.dtype(dtype) == self.dtype:
            return self
        a = _alloc(self.shape, dtype)
        with np.errstate(all="ignore"):
            a.view(np.ndarray)[...] = self.view(np.ndarray).astype(dtype)
        return a

    def __repr__(self):
        return f"fakecupy.array({self.view(np.ndarray)!r}, device={self._dev})"


ndarray.__module__ = "cupy"  # fastnorm dispatches on the type's top-level module
ndarray.__qualname__ = "ndarray"


def _wrap(r):
    if isinstance(r, tuple):
        return tuple(_wrap(a) for a in r)
    if isinstance(r, ndarray):
        return r
    a = _alloc(np.shape(r), np.asarray(r).dtype)
    a.view(np.ndarray)[...] = r
    return a


def _host(a):
    return a.view(np.ndarray) if isinstance(a, ndarray) else a


def empty(shape, dtype=float64, order="C"):
    return _alloc(shape, dtype)


def zeros(shape, dtype=float64, order="C"):
    return _alloc(shape, dtype, fill=0)


def empty_like(a, dtype=None):
    return _alloc(a.shape, dtype or a.dtype)


def array(obj, dtype=None, copy=True, order="K"):
    if isinstance(obj, ndarray) and not copy and (dtype is None or np.dtype(dtype) == obj.dtype):
        return obj
    h = np.asarray(_host(obj), dtype=dtype)
    a = _alloc(h.shape, h.dtype)
    a.view(np.ndarray)[...] = h
    return a


def asarray(obj, dtype=None, order=None):
    # as CuPy: an array already on a device is returned as it is (whatever
    # the current device), converted where the dtype differs
    if isinstance(obj, ndarray):
        return obj if dtype is None or np.dtype(dtype) == obj.dtype else obj.astype(dtype)
    return array(obj, dtype)


def ascontiguousarray(a, dtype=None):
    a = asarray(a, dtype)
    return a if a.flags.c_contiguous else a.copy()


def asnumpy(a, stream=None):
    return a.get() if isinstance(a, ndarray) else np.asarray(a)


def broadcast_to(a, shape):
    return (
        np.broadcast_to(_host(a), shape).view(ndarray) if isinstance(a, ndarray) else _wrap(np.broadcast_to(a, shape))
    )


def where(c, a, b):
    return _wrap(np.where(_host(c), _host(a), _host(b)))


def sqrt(a):
    return np.sqrt(a)


def may_share_memory(a, b):
    return np.may_share_memory(_host(a), _host(b))


def shares_memory(a, b, max_work=None):
    raise AssertionError("cupy.shares_memory (exact, builds address arrays of every element) called")


def get_array_module(*args):
    return sys.modules[__name__]


# ----------------------------------------------------------------- compiler
_PTR_DTYPES = {
    "f32": {np.dtype(np.float32)},
    "f64": {np.dtype(np.float64)},
    "f16": {np.dtype(np.float16)},
    "bf16": {"bfloat16"},
    "triple": {np.dtype(np.float64)},
    **{f"{k}{b}": {np.dtype(f"{'uint' if k == 'u' else 'int'}{b}")} for k in "ui" for b in (8, 16, 32, 64)},
}
_SCALARS = {
    "i64": (np.int64, ctypes.c_int64),
    "i32": (np.int32, ctypes.c_int32),
    "f64": (np.float64, ctypes.c_double),
    "f32": (np.float32, ctypes.c_float),
    "u64": (np.uint64, ctypes.c_uint64),
}


def _build(code, options, names):
    """Shared library of code + launch wrappers for names; cached by content."""
    if not CXX:
        raise RuntimeError("no host C++ compiler (g++) for the CUDA emulator")
    defines = [o for o in options if o.startswith("-D")]
    unit = [
        code,
        (
            "\nstruct Triple;\nnamespace fnemu { template <> struct Name<Triple> "
            '{ static std::string s() { return "triple"; } }; }\n'
        ),
    ]
    for i, n in enumerate(names):
        unit.append(
            f"FNEMU_EXPORT int fnemu_launch_{i}(const unsigned *g, const unsigned *b, size_t sm, void **a, "
            f"char *e, size_t el) {{ return fnemu::launch(&{n}, g, b, sm, a, e, el); }}\n"
            f"FNEMU_EXPORT const char *fnemu_sig_{i}() {{ return fnemu::sig(&{n}); }}\n"
        )
    src = "".join(unit)
    with open(SHIM) as f:
        shim = f.read()
    flags = [
        "-std=c++17",
        "-O1",
        "-fPIC",
        "-fno-strict-aliasing",
        "-fsanitize=alignment",
        "-fvisibility=hidden",
        "-fvisibility-inlines-hidden",
        "-fno-gnu-unique",
        "-w",
    ] + defines
    key = hashlib.sha256("\0".join([shim, src, " ".join(flags), CXX]).encode()).hexdigest()[:24]
    d = os.path.join(tempfile.gettempdir(), f"fastnorm-gpu-emu-{os.getuid()}")
    os.makedirs(d, exist_ok=True)
    so = os.path.join(d, key + ".so")
    if not os.path.exists(so):
        stub = os.path.join(d, "include")
        os.makedirs(stub, exist_ok=True)
        for h in ("cuda_fp16.h", "cuda_bf16.h", "cuda_runtime.h"):
            open(os.path.join(stub, h), "a").close()
        tmp = tempfile.mkdtemp(dir=d)
        cpp, obj = os.path.join(tmp, "unit.cpp"), os.path.join(tmp, "unit.o")
        with open(cpp, "w") as f:
            f.write(src)
        cmd = [CXX, *flags, "-include", SHIM, "-I", stub, "-c", cpp, "-o", obj]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"emulator build failed: {' '.join(cmd)}\n{r.stderr[-6000:]}")
        # linked without libubsan: fnemu.h's handler turns a misaligned access into a launch error
        r = subprocess.run([CXX, "-shared", obj, "-o", os.path.join(tmp, "k.so")], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"emulator link failed\n{r.stderr[-4000:]}")
        os.replace(os.path.join(tmp, "k.so"), so)
        shutil.rmtree(tmp, ignore_errors=True)
    lib = ctypes.CDLL(so)
    sigs = {}
    for i, n in enumerate(names):
        getattr(lib, f"fnemu_sig_{i}").restype = ctypes.c_char_p
        sigs[n] = (i, getattr(lib, f"fnemu_sig_{i}")().decode().split(","))
    return lib, sigs


def helper_lib():
    """The emulator's runtime alone (its conversion hooks, for tests)."""
    return _build("", (), ())[0]


def _bounds(code):
    """__launch_bounds__ of each kernel (by name without template arguments)."""
    return {m.group(2): int(m.group(1)) for m in re.finditer(r"__launch_bounds__\((\d+)[^)]*\)\s+(\w+)\s*\(", code)}


class RawModule:
    compiled = []  # (options, name_expressions) of every compile, for tests

    def __init__(
        self,
        code=None,
        path=None,
        options=(),
        backend="nvrtc",
        translate_cucomplex=False,
        enable_cooperative_groups=False,
        name_expressions=None,
        jitify=False,
    ):
        if code is None:
            with open(path) as f:
                code = f.read()
        self.code, self.options = code, tuple(options)
        self.name_expressions = tuple(name_expressions or ())
        self._lib = None
        self._device = _current()

    def compile(self, log_stream=None):
        if self._lib is None:
            self._lib, self._sigs = _build(self.code, self.options, self.name_expressions)
            self._limits = _bounds(self.code)
            RawModule.compiled.append((self.options, self.name_expressions))

    def get_function(self, name):
        self.compile()
        if name not in self._sigs:
            raise ValueError(f"{name} is not in the module's name_expressions")
        if _current() != self._device:
            raise RuntimeError(f"function {name} looked up on device {_current()}, module built on {self._device}")
        i, sig = self._sigs[name]
        return Function(
            self, name, getattr(self._lib, f"fnemu_launch_{i}"), sig, self._limits.get(name.split("<")[0].strip())
        )


class Function:
    def __init__(self, module, name, fn, sig, max_threads):
        self.module, self.name, self.fn, self.sig, self.max_threads = module, name, fn, sig, max_threads
        self.device = _current()
        fn.restype = ctypes.c_int

    def _arg(self, i, t, a, keep, arrays):
        where = f"{self.name} argument {i}"
        if t.startswith(("p:", "cp:")):
            el = t.split(":")[1]
            if isinstance(a, np.uint64) and int(a) == 0:
                return ctypes.c_void_p(0)
            if not isinstance(a, ndarray):
                raise TypeError(f"{where}: a device array or a null np.uint64 for {t}, got {type(a).__name__}")
            ok = _PTR_DTYPES[el]
            if a.dtype not in ok and a.dtype.name not in ok:
                raise TypeError(f"{where}: array of {a.dtype} for a pointer to {el}")
            if a._dev != _current():
                raise RuntimeError(f"{where}: array on device {a._dev}, kernel launched on device {_current()}")
            if t.startswith("p:") and not a.flags.writeable:
                raise ValueError(f"{where}: read-only array for a written pointer")
            arrays.append(a)
            return ctypes.c_void_p(a.ctypes.data)
        want, ct = _SCALARS[t]
        if type(a) is not want:
            raise TypeError(f"{where}: the kernel takes {t}, got {type(a).__name__} (cast it explicitly)")
        return ct(a)

    def __call__(self, grid, block, args, shared_mem=0, stream=None, enable_cooperative_groups=False):
        g = tuple(int(v) for v in grid) + (1,) * (3 - len(grid))
        b = tuple(int(v) for v in block) + (1,) * (3 - len(block))
        L = LIMITS
        if min(g) < 1 or g[0] > L["grid_x"] or max(g[1:]) > L["grid_yz"]:
            raise ValueError(
                f"{self.name}: grid {g} outside the device limits ({L['grid_x']}, {L['grid_yz']}, {L['grid_yz']})"
            )
        nt = b[0] * b[1] * b[2]
        if min(b) < 1 or max(b[:2]) > L["block_xy"] or b[2] > L["block_z"] or nt > L["threads"]:
            raise ValueError(f"{self.name}: block {b} outside the device limits")
        if self.max_threads is not None and nt > self.max_threads:
            raise ValueError(f"{self.name}: {nt} threads per block, __launch_bounds__ allows {self.max_threads}")
        if not 0 <= int(shared_mem) <= L["shared"]:
            raise ValueError(f"{self.name}: {shared_mem} bytes of dynamic shared memory")
        if _current() != self.device:
            raise RuntimeError(f"{self.name}: launched on device {_current()}, looked up on device {self.device}")
        if len(args) != len(self.sig):
            raise TypeError(f"{self.name}: {len(args)} arguments for {len(self.sig)} parameters")
        keep, arrays = [], []
        cargs = [self._arg(i, t, a, keep, arrays) for i, (t, a) in enumerate(zip(self.sig, args))]
        argv = (ctypes.c_void_p * len(cargs))(*[ctypes.cast(ctypes.pointer(c), ctypes.c_void_p) for c in cargs])
        err = ctypes.create_string_buffer(512)
        with _lock:
            rc = self.fn(
                (ctypes.c_uint * 3)(*g),
                (ctypes.c_uint * 3)(*b),
                ctypes.c_size_t(int(shared_mem)),
                argv,
                err,
                ctypes.c_size_t(512),
            )
            st = (ctypes.c_longlong * 2)()
            self.module._lib.fnemu_stats(st)
        LAUNCHES.append(
            Launch(
                name=self.name,
                grid=g,
                block=b,
                shared_mem=int(shared_mem),
                device=_current(),
                threads=st[0],
                loading=st[1],
            )
        )
        if rc:
            raise RuntimeError(f"{self.name} grid {g} block {b}: {err.value.decode()}")
        for a in arrays:
            _check_guards(a)


class RawKernel:
    def __init__(self, *a, **k):
        raise NotImplementedError("the fake has RawModule only")


cuda = types.SimpleNamespace(Device=Device, runtime=types.SimpleNamespace(getDeviceCount=lambda: NUM_DEVICES))


@contextlib.contextmanager
def installed():
    """sys.modules['cupy'] is this module, and fastnorm's GPU backend is imported
    afresh against it, for the duration."""
    saved = {k: sys.modules.get(k) for k in ("cupy", "fastnorm._gpu._backend")}
    sys.modules["cupy"] = sys.modules[__name__]
    sys.modules.pop("fastnorm._gpu._backend", None)
    import fastnorm._backends as api

    saved_loaded = api._loaded.pop("cupy", None)
    try:
        import fastnorm._gpu._backend as be

        yield be
    finally:
        api._loaded.pop("cupy", None)
        if saved_loaded is not None:
            api._loaded["cupy"] = saved_loaded
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
