# The compiled engine (_engine.pyx): typed loosely here; the Python layer
# (fastnorm._cpu._backend) is its one caller and validates every argument.
from typing import Any

def __getattr__(name: str) -> Any: ...
