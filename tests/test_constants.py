"""Constants that more than one language states must agree.

The dtype codes (fastnorm/_codes.py) and the activation codes
(fastnorm/_validate.py) cross from Python into
C (fastnorm/_cpu/fn_base.h, which the Cython engine and the C harness include)
and CUDA (fastnorm/_gpu/kernels.cu, reached through fastnorm/_gpu/_backend.py
and _names.py); the GPU host code restates the kernels' chunk sizes and launch
bounds.  Each is read here from the sources themselves (nothing is imported, so
this runs without a build, CuPy or a GPU), and ``test_a_changed_side_is_caught``
edits each value on one side and checks that the comparison notices.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = {
    "codes": "fastnorm/_codes.py",
    "validate": "fastnorm/_validate.py",
    "fn_base": "fastnorm/_cpu/fn_base.h",
    "engine": "fastnorm/_cpu/_engine.pyx",
    "kernels_cu": "fastnorm/_gpu/kernels.cu",
    "gpu_backend": "fastnorm/_gpu/_backend.py",
    "gpu_names": "fastnorm/_gpu/_names.py",
    "api": "fastnorm/_api.py",
}
# fn_base.h's enum names -> the Python names
DTYPE_NAMES = {
    "FN_F16": "F16",
    "FN_F32": "F32",
    "FN_F64": "F64",
    "FN_BF16": "BF16",
    "FN_U8": "U8",
    "FN_I8": "I8",
    "FN_U16": "U16",
    "FN_I16": "I16",
    "FN_U32": "U32",
    "FN_I32": "I32",
    "FN_U64": "U64",
    "FN_I64": "I64",
}
# the NumPy type of each code in _codes._CODES (bfloat16: by name, from ml_dtypes)
CODE_TYPES = {
    "F16": "float16",
    "F32": "float32",
    "F64": "float64",
    "U8": "uint8",
    "I8": "int8",
    "U16": "uint16",
    "I16": "int16",
    "U32": "uint32",
    "I32": "int32",
    "U64": "uint64",
    "I64": "int64",
}
ACT_NAMES = {"FN_ACT_NONE": None, "FN_ACT_RELU": "relu", "FN_ACT_LEAKY": "leaky_relu", "FN_ACT_SILU": "silu"}


def _sources():
    return {k: (ROOT / p).read_text() for k, p in FILES.items()}


# ------------------------------------------------------------------ parsing
def _py_assigns(text):
    """Top-level `NAME = <expr>` and `A, B = 1, 2` of a Python file: name -> ast node."""
    out = {}
    for node in ast.parse(text).body:
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target = node.targets[0]
        if isinstance(target, ast.Name):
            out[target.id] = node.value
        elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
            for t, v in zip(target.elts, node.value.elts):
                if isinstance(t, ast.Name):
                    out[t.id] = v
    return out


def _c_enum(text, names):
    """Values of the enumerators `names` (each written `NAME = <int>`) of C source."""
    found = {}
    for body in re.findall(r"\benum\s*\{([^}]*)\}", text):
        for name, value in re.findall(r"\b(\w+)\s*=\s*(\d+)", body):
            if name in names:
                found[name] = int(value)
    return found


def _c_define(text, name):
    m = re.search(rf"^#define\s+{re.escape(name)}\s+(\d+)\b", text, re.MULTILINE)
    return int(m.group(1)) if m else None


def _cu_activations(text):
    """kernels.cu's activate(): {code: name} from its `if (act == N) ... // name` lines."""
    m = re.search(r"\bactivate\s*\([^)]*\)\s*\{(.*?)\n\}", text, re.DOTALL)
    assert m, "activate() not found in kernels.cu"
    return {int(code): name for code, name in re.findall(r"act\s*==\s*(\d+)\).*?//\s*(\w+)", m.group(1))}


def _cu_launch_bounds(text):
    """kernel name -> maximum threads per block from __launch_bounds__(N, ...)."""
    return {name: int(n) for n, name in re.findall(r"__launch_bounds__\((\d+)[^)]*\)\s*(\w+)\s*\(", text)}


# ------------------------------------------------------------------ checks
def _mismatches(src):
    """Every disagreement between the sources, as readable lines (empty: all agree)."""
    bad = []
    val = _py_assigns(src["validate"])
    kc = _py_assigns(src["codes"])

    # dtype codes: _codes.F16... == fn_base.h's FN_F16...
    c_dt = _c_enum(src["fn_base"], DTYPE_NAMES)
    if set(c_dt) != set(DTYPE_NAMES):
        bad.append(f"fn_base.h: storage enum has {sorted(c_dt)}, expected {sorted(DTYPE_NAMES)}")
    py_dt = {py: ast.literal_eval(kc[py]) for py in DTYPE_NAMES.values() if py in kc}
    for c, py in DTYPE_NAMES.items():
        if c in c_dt and c_dt[c] != py_dt.get(py):
            bad.append(f"dtype code {py}: _codes.py {py_dt.get(py)} != fn_base.h {c} = {c_dt[c]}")
    # _codes._CODES maps each NumPy type to its code's name
    codes = {}
    for k, v in zip(kc["_CODES"].keys, kc["_CODES"].values):
        # np.dtype(np.uint8): U8
        codes[ast.unparse(k)] = ast.unparse(v)
    for py, tname in CODE_TYPES.items():
        if codes.get(f"np.dtype(np.{tname})") != py:
            bad.append(f"_codes._CODES[np.dtype(np.{tname})] is {codes.get(f'np.dtype(np.{tname})')}, expected {py}")
    # the input / output code counts
    if _c_define(src["fn_base"], "FN_NCODES") != len(DTYPE_NAMES):
        bad.append(f"fn_base.h FN_NCODES = {_c_define(src['fn_base'], 'FN_NCODES')}, {len(DTYPE_NAMES)} codes")
    # the engine takes them from fn_base.h, not from a copy of its own
    if re.search(r"^\s*(?:FN_)?B?F(?:16|32|64)\s*=\s*\d", src["engine"], re.MULTILINE):
        bad.append("_engine.pyx restates a storage code: use fn_base.h's FN_F16... (cdef extern)")

    # GPU: code -> CUDA type (_backend.TNAME) agrees with dtype name -> CUDA type (_names.TYPES)
    names = _py_assigns(src["gpu_names"])
    types = ast.literal_eval(names["TYPES"])
    tname = {}
    for k, v in zip(_py_assigns(src["gpu_backend"])["TNAME"].keys, _py_assigns(src["gpu_backend"])["TNAME"].values):
        tname[k.attr] = ast.literal_eval(v)  # K.F16 -> "__half"
    by_name = {"float16": "F16", "float32": "F32", "float64": "F64", "bfloat16": "BF16"}
    for dname, code in by_name.items():
        if tname.get(code) != types.get(dname):
            bad.append(
                f"{dname}: _gpu/_backend.TNAME[{code}] = {tname.get(code)!r} "
                f"!= _gpu/_names.TYPES[{dname!r}] = {types.get(dname)!r}"
            )
    for t in types.values():
        if not re.search(rf"struct\s+Tr<\s*{re.escape(t)}\s*>", src["kernels_cu"]):
            bad.append(f"kernels.cu: no Tr<{t}> for _names.TYPES")

    # activation codes: _validate.ACTIVATIONS == fn_base.h's FN_ACT_* == kernels.cu's activate()
    acts = ast.literal_eval(val["ACTIVATIONS"])
    c_act = _c_enum(src["fn_base"], ACT_NAMES)
    if set(c_act) != set(ACT_NAMES):
        bad.append(f"fn_base.h: activation enum has {sorted(c_act)}, expected {sorted(ACT_NAMES)}")
    if set(acts) != set(ACT_NAMES.values()):
        bad.append(f"_validate.ACTIVATIONS names {sorted(acts, key=str)}, the C enum {list(ACT_NAMES.values())}")
    for c, py in ACT_NAMES.items():
        if c in c_act and py in acts and c_act[c] != acts[py]:
            bad.append(f"activation {py!r}: _validate.py {acts[py]} != fn_base.h {c} = {c_act[c]}")
    cu = _cu_activations(src["kernels_cu"])
    want = {code: name for name, code in acts.items() if name is not None}
    if cu != want:
        bad.append(f"kernels.cu activate() handles {cu}, _validate.ACTIVATIONS says {want}")

    # GPU chunking: _gpu/_names.py passes CHUNK and CL_ROWS to kernels.cu as
    # -D options; kernels.cu's own defaults (an nvcc build without them) must agree
    be = _py_assigns(src["gpu_names"])
    for py, c in (("CHUNK", "FN_CHUNK"), ("CL_ROWS", "FN_CL_ROWS")):
        cv, pv = _c_define(src["kernels_cu"], c), ast.literal_eval(be[py]) if py in be else None
        if cv is None or cv != pv:
            bad.append(f"_gpu/_names.{py} = {pv} != kernels.cu {c} = {cv}")
    # the block kernel's launch: _names.BLOCK_THREADS threads, its __launch_bounds__
    bounds = _cu_launch_bounds(src["kernels_cu"])
    bt = ast.literal_eval(names["BLOCK_THREADS"])
    if bounds.get("cf_fused_block") != bt:
        bad.append(
            f"_gpu/_names.BLOCK_THREADS = {bt} != __launch_bounds__ of cf_fused_block ({bounds.get('cf_fused_block')})"
        )

    # the CPU statistics block the public docstring quotes
    m = re.search(r"Welford triples per block of (\d+) elements", src["api"])
    blk = _c_define(src["fn_base"], "FN_BLOCK")
    if m and int(m.group(1)) != blk:
        bad.append(f"_api.py's docstring: blocks of {m.group(1)} elements, fn_base.h FN_BLOCK = {blk}")
    return bad


def test_constants_agree_across_languages():
    assert _mismatches(_sources()) == []


# (file, what to find, what to put instead): one side of each pair changed
MUTATIONS = [
    ("codes", "F16, F32, F64, BF16 = 0, 1, 2, 3", "F16, F32, F64, BF16 = 0, 1, 3, 2"),
    ("fn_base", "FN_BF16 = 3", "FN_BF16 = 4"),
    ("fn_base", "FN_I64 = 11", "FN_I64 = 12"),
    (
        "codes",
        "U8, I8, U16, I16, U32, I32, U64, I64 = 4, 5, 6, 7, 8, 9, 10, 11",
        "U8, I8, U16, I16, U32, I32, U64, I64 = 4, 5, 6, 7, 9, 8, 10, 11",
    ),
    ("codes", "np.dtype(np.int16): I16", "np.dtype(np.int16): U16"),
    ("fn_base", "#define FN_NCODES 12", "#define FN_NCODES 11"),
    ("engine", "cnp.import_array()\n", "cnp.import_array()\nF32 = 1\n"),
    ("gpu_backend", 'K.F16: "__half"', 'K.F16: "float"'),
    ("gpu_names", '"bfloat16": "__nv_bfloat16"', '"bfloat16": "__half"'),
    ("validate", '"silu": 3', '"silu": 4'),
    ("validate", '"relu": 1', '"relu": 1, "gelu": 4'),
    ("fn_base", "FN_ACT_LEAKY = 2", "FN_ACT_LEAKY = 5"),
    ("kernels_cu", "if (act == 3)", "if (act == 4)"),
    ("gpu_names", "CHUNK = 16384", "CHUNK = 8192"),
    ("kernels_cu", "#define FN_CHUNK 16384", "#define FN_CHUNK 32768"),
    ("kernels_cu", "#define FN_CL_ROWS 256", "#define FN_CL_ROWS 128"),
    ("gpu_names", "BLOCK_THREADS = 512", "BLOCK_THREADS = 1024"),
    ("fn_base", "#define FN_BLOCK 16384", "#define FN_BLOCK 8192"),
]


@pytest.mark.parametrize("key, old, new", MUTATIONS, ids=[f"{k}:{n}" for k, _, n in MUTATIONS])
def test_a_changed_side_is_caught(key, old, new):
    src = _sources()
    assert old in src[key], f"{FILES[key]} no longer contains {old!r}: update MUTATIONS"
    src[key] = src[key].replace(old, new, 1)
    assert _mismatches(src), f"changing {old!r} to {new!r} in {FILES[key]} went unnoticed"
