"""The environment variables the CPU engine reads at import: FASTNORM_ISA
(the kernel level) and FASTNORM_CACHE_BYTES (the output pool's cap).  A bad
value warns, naming the variable, the value and what is valid, at the user's
line that imported fastnorm or first called it, and the default is kept."""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from types import FrameType

_PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_MACHINERY = os.path.dirname(os.path.abspath(importlib.__file__)) + os.sep


def _user_level() -> int:
    """The warnings stacklevel, for a warning raised by this module's warn,
    of the first frame outside fastnorm and the import machinery (the
    engine's initialisation runs without a Python frame of its own).
    warnings counts from warn's frame and, since that frame is not
    importlib's, does not count importlib's bootstrap frames."""
    f: FrameType | None = sys._getframe(2)  # warn's caller
    level = 2
    while f is not None and f.f_back is not None:
        name = f.f_code.co_filename
        if "importlib" in name and "_bootstrap" in name:  # frames warnings skips
            f = f.f_back
            continue
        if not os.path.abspath(name).startswith((_PKG, _MACHINERY)):
            break
        f = f.f_back
        level += 1
    return level


def warn(message: str) -> None:
    """A RuntimeWarning at the user's line."""
    warnings.warn(message, RuntimeWarning, stacklevel=_user_level())


def isa_request() -> str:
    """FASTNORM_ISA, stripped; "auto" when unset or empty."""
    return os.environ.get("FASTNORM_ISA", "auto").strip() or "auto"


def cache_bytes(limit: int, current: int) -> int | None:
    """FASTNORM_CACHE_BYTES as a byte count in [0, limit]; None when unset,
    empty, or not such a count (which warns, keeping current)."""
    v = os.environ.get("FASTNORM_CACHE_BYTES")
    if v is None or not v.strip():
        return None
    try:
        cap = int(v)
    except ValueError:
        cap = -1
    if 0 <= cap <= limit:
        return cap
    warn(f"FASTNORM_CACHE_BYTES={v!r} is not a byte count in [0, {limit}]; keeping {current} bytes")
    return None
