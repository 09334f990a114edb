from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

ArrayLike = Any

def instance_norm(x: ArrayLike, weight: Optional[ArrayLike] = ..., bias: Optional[ArrayLike] = ..., *,
                  eps: float = ..., channel_axis: int = ..., activation: Optional[str] = ...,
                  negative_slope: float = ..., out: Optional[Any] = ..., num_threads: Optional[int] = ...) -> Any: ...
def group_norm(x: ArrayLike, num_groups: int, weight: Optional[ArrayLike] = ..., bias: Optional[ArrayLike] = ..., *,
               eps: float = ..., channel_axis: int = ..., activation: Optional[str] = ...,
               negative_slope: float = ..., out: Optional[Any] = ..., num_threads: Optional[int] = ...) -> Any: ...
def instance_stats(x: ArrayLike, *, channel_axis: int = ..., num_threads: Optional[int] = ...) -> Tuple[Any, Any]: ...
def normalize(x: ArrayLike, mean: ArrayLike, var: ArrayLike, weight: Optional[ArrayLike] = ...,
              bias: Optional[ArrayLike] = ..., *, eps: float = ..., channel_axis: int = ...,
              activation: Optional[str] = ..., negative_slope: float = ..., out: Optional[Any] = ...,
              num_threads: Optional[int] = ...) -> Any: ...
def adain(content: ArrayLike, style: ArrayLike, *, eps: float = ..., channel_axis: int = ...,
          alpha: float = ..., num_threads: Optional[int] = ...) -> Any: ...

class Moments:
    count: Any
    mean: Any
    m2: Any
    def __init__(self, count: Any, mean: Any, m2: Any) -> None: ...
    @property
    def var(self) -> Any: ...
    @property
    def shape(self) -> Tuple[int, ...]: ...
    def merge(self, other: "Moments") -> "Moments": ...

def instance_moments(x: ArrayLike, *, channel_axis: int = ..., num_threads: Optional[int] = ...) -> Moments: ...
def merge_moments(a: Moments, b: Moments) -> Moments: ...

class InstanceNorm:
    num_features: int
    eps: float
    momentum: Optional[float]
    affine: bool
    track_running_stats: bool
    channel_axis: int
    weight: Optional[np.ndarray]
    bias: Optional[np.ndarray]
    running_mean: Optional[np.ndarray]
    running_var: Optional[np.ndarray]
    num_batches_tracked: Optional[np.ndarray]
    def __init__(self, num_features: int, *, eps: float = ..., momentum: Optional[float] = ...,
                 affine: bool = ..., track_running_stats: bool = ..., channel_axis: int = ...) -> None: ...
    def __call__(self, x: ArrayLike, training: bool = ..., *, num_threads: Optional[int] = ...) -> Any: ...
    def forward(self, x: ArrayLike, training: bool = ..., *, num_threads: Optional[int] = ...) -> Any: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state_dict: Any, strict: bool = ...) -> "InstanceNorm": ...

def show_config(mode: str = ..., file: Any = ...) -> Any: ...
