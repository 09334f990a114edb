"""fastnorm: fast, exact Instance Normalization for NumPy (CPU, OpenMP) and CuPy (GPU).

Public API: instance_norm, instance_stats, group_norm, normalize, adain,
instance_moments, merge_moments, Moments, instance_norm_backward,
group_norm_backward, InstanceNorm, show_config.
Importing fastnorm imports none of its optional dependencies.
"""

__version__ = "0.1.0"

from typing import Any

from ._api import (
    Moments,
    adain,
    group_norm,
    instance_moments,
    instance_norm,
    instance_stats,
    merge_moments,
    normalize,
)
from ._backward import group_norm_backward, instance_norm_backward
from ._config import show_config
from ._layers import InstanceNorm

__all__ = [
    "__version__",
    "instance_norm",
    "instance_stats",
    "group_norm",
    "normalize",
    "adain",
    "instance_moments",
    "merge_moments",
    "Moments",
    "InstanceNorm",
    "show_config",
    "instance_norm_backward",
    "group_norm_backward",
]


def __getattr__(name: str) -> Any:
    if name == "torch":  # fastnorm.torch: imports torch only when used
        import importlib

        return importlib.import_module("fastnorm.torch")
    raise AttributeError(f"module 'fastnorm' has no attribute {name!r}")
