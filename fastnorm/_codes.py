"""The kernels' vocabulary, shared by every layer: the dtype codes of the
CPU engine and the GPU kernels (fn_base.h's storage enum states them in C;
tests/test_constants.py checks that the two agree) and the (N, C, S) of a
shape.  Imports nothing of fastnorm.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: storage codes understood by the CPU engine (and the GPU kernels): the
#: floating ones (every output type) first, then the integer inputs
F16, F32, F64, BF16 = 0, 1, 2, 3
U8, I8, U16, I16, U32, I32, U64, I64 = 4, 5, 6, 7, 8, 9, 10, 11
_CODES = {
    np.dtype(np.float16): F16,
    np.dtype(np.float32): F32,
    np.dtype(np.float64): F64,
    np.dtype(np.uint8): U8,
    np.dtype(np.int8): I8,
    np.dtype(np.uint16): U16,
    np.dtype(np.int16): I16,
    np.dtype(np.uint32): U32,
    np.dtype(np.int32): I32,
    np.dtype(np.uint64): U64,
    np.dtype(np.int64): I64,
}
#: the codes of the floating (output) types
FLOAT_CODES = (F16, F32, F64, BF16)


def code_dtype(code: int) -> Any:
    """The dtype of an engine code (bfloat16 needs ml_dtypes)."""
    if code == BF16:
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    for dt, c in _CODES.items():
        if c == code:
            return dt
    raise ValueError(f"unknown dtype code {code!r}")


def is_integer(code: int) -> bool:
    """Whether a dtype code is an integer input type (read as exact values)."""
    return code not in (F16, F32, F64, BF16)


def layout(shape: Any, cl: bool) -> tuple[int, int, int]:
    """(N, C, S) of a validated shape."""
    N = int(shape[0])
    C = int(shape[-1] if cl else shape[1])
    S = 1
    for d in shape[1:-1] if cl else shape[2:]:
        S *= int(d)
    return N, C, S
