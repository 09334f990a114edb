"""Drop-in torch.nn modules backed by fastnorm, and convert().

``InstanceNorm1d/2d/3d`` and ``GroupNorm`` subclass torch's own classes, so
constructor arguments, parameters, buffers and ``state_dict`` keys are torch's;
only ``forward`` runs fastnorm's kernels, through the ``fastnorm::`` custom
operators (fastnorm._torch_ops), which autograd differentiates with fastnorm's
backward kernels and which torch.compile, torch.export, jit.trace / jit.script
and both ONNX exporters handle.  An eager call with nothing to record (no
autograd, trace, compile or torch mode) runs the operator's implementation
without torch's custom-operator dispatch, which costs more than the kernels
of a small input: the same result.  Shapes stay symbolic in ``forward`` (no size
is converted to a Python number), so an export with dynamic dimensions takes
every shape.

Importing this module imports torch (``import fastnorm`` does not), and wraps
``torch.onnx.export`` only to add a note naming :func:`onnx_translation_table`
to an export that fails on a fastnorm operator without it.

Examples
--------
>>> import torch, fastnorm.torch as fnt
>>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.InstanceNorm2d(8), torch.nn.ReLU())
>>> model = fnt.convert(model)
>>> type(model[1]).__name__
'InstanceNorm2d'
>>> with torch.inference_mode():
...     y = model(torch.randn(1, 3, 16, 16))
>>> tuple(y.shape)
(1, 8, 14, 14)
"""

from collections import Counter
from typing import Any

try:
    import torch
except ModuleNotFoundError as e:
    if e.name != "torch":  # torch is there but broken: its own error
        raise
    raise ModuleNotFoundError(
        "fastnorm.torch needs PyTorch, which is not installed: pip install torch "
        "(fastnorm's functions themselves run without it)",
        name="torch",
    ) from None
import torch.autograd.forward_ad as _fwad
from torch import Tensor, nn

from . import _torch_ops  # registers the fastnorm:: operators; _eager reads them
from ._torch_arrays import primal as _primal_values
from ._torch_arrays import transform_active as _transform_active
from ._torch_arrays import transform_route as _transform_route
from ._torch_onnx import install_export_hint, onnx_translation_table, register_legacy_symbolics
from ._torch_ops import _DISPATCH_DEPTH, _PROFILING, _TF_MODE
from ._torch_ops import group_norm_impl as _group_norm_impl
from ._torch_ops import instance_norm_impl as _instance_norm_impl
from ._torch_ops import own_kernel as _own_kernel

register_legacy_symbolics()
install_export_hint()

__all__ = [
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "GroupNorm",
    "FusedActivation",
    "FusedPad",
    "convert",
    "onnx_translation_table",
]


_FUNCTORCH = getattr(torch._C, "_are_functorch_transforms_active", None)
_AUTOCAST = getattr(torch._C, "_is_any_autocast_enabled", None)


@torch.jit.unused
def _eager(
    x: Tensor,
    instance: bool,
    num_groups: int,
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float,
    act: str,
    slope: float,
) -> Tensor | None:
    """forward's result from the operator's implementation itself, where
    nothing needs the operator: an eager call (no torch.compile or export, no
    jit trace; jit.script never gets here) on a plain CPU or CUDA tensor (not
    nested, no negative bit, not a ZeroTensor) with plain parameters, the
    module's attributes of their plain types, no autograd to record, and no
    torch function or dispatch mode, torch.func transform (vmap: its tensors
    have no storage), profiler or autocast active.  torch.library's
    custom-operator dispatch costs about 12 us a call, more than the kernels
    of a small input.  The operator runs wherever a kernel was registered on
    it for a device (a lower-level ``torch.library.Library`` override is not
    seen here).  Under a torch.func transform or with a forward-mode tangent
    the operator's autograd.Function form runs (fastnorm._torch_func: the
    operator has no rules for them).  None: call the operator."""
    tf, dd, ft, pe, ac = _TF_MODE, _DISPATCH_DEPTH, _FUNCTORCH, _PROFILING, _AUTOCAST
    if tf is None or dd is None or ft is None or pe is None or ac is None:  # a torch without these: the operator
        return None
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return None
    functorch = ft()
    route = _transform_route(x, weight, bias) if functorch or _fwad._current_level >= 0 else None
    if route == "function":
        from ._torch_func import FUNCTIONS

        if instance:
            return FUNCTIONS.instance_norm(x, weight, bias, eps, act, slope)
        return FUNCTIONS.group_norm(x, num_groups, weight, bias, eps, act, slope)
    if functorch:  # functionalize's tensors: the operator, which it functionalizes; constants inside a transform too
        return None
    if type(x) is not torch.Tensor:
        return None
    # meta tensors: the operator's fake gives the shape; the rest: the dispatcher resolves them first
    if not (x.is_cpu or x.is_cuda) or x.is_nested or x.is_neg() or x._is_zerotensor():
        return None
    for v in (weight, bias):
        if v is not None and (
            (type(v) is not torch.Tensor and type(v) is not nn.Parameter) or v.is_neg() or v._is_zerotensor()
        ):
            return None
    if type(eps) is not float or type(slope) not in (float, int) or type(act) is not str:
        return None  # the operator's schema coerces or refuses other types
    if not instance and (type(num_groups) is not int or num_groups < 1):
        return None
    record = torch.is_grad_enabled() and (
        x.requires_grad or (weight is not None and weight.requires_grad) or (bias is not None and bias.requires_grad)
    )
    if tf() or dd() > 0 or pe() or ac():
        return None
    if not _own_kernel(_torch_ops.instance_norm if instance else _torch_ops.group_norm):
        return None
    if record:  # the operator's implementation and registered autograd, as an autograd.Function
        if instance:
            return _torch_ops.EagerInstanceNorm.apply(x, weight, bias, eps, act, slope)
        return _torch_ops.EagerGroupNorm.apply(x, num_groups, weight, bias, eps, act, slope)
    if instance:
        return _instance_norm_impl(x, weight, bias, eps, act, slope)
    return _group_norm_impl(x, num_groups, weight, bias, eps, act, slope)


@torch.jit.unused
def _transformed_normalize(
    x: Tensor,
    mean: Tensor,
    var: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float,
    act: str,
    slope: float,
) -> Tensor | None:
    """fastnorm::normalize's autograd.Function form under a torch.func
    transform or with a forward-mode tangent (fastnorm._torch_func); None:
    call the operator."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or not _transform_active(x, mean, var, weight, bias):
        return None
    from ._torch_func import FUNCTIONS

    return FUNCTIONS.normalize(x, mean, var, weight, bias, eps, act, slope)


def _update_running_stats(x: Tensor, rm: Tensor, rv: Tensor, mom: float) -> None:
    """torch's running-statistics step from x's own statistics (the unbiased
    variance), in float64 (the moments' dtype) and rounded once into the
    buffers: in a float16 / bfloat16 buffer each step would round (and cancel)."""
    with torch.no_grad():
        mean, var = torch.ops.fastnorm.moments(x.detach())
        n = _spatial(x)  # symbolic under torch.export, traced under jit.trace: float() would specialize it
        rm.copy_((1 - mom) * rm.double() + mom * mean.mean(0).to(rm.device))
        rv.copy_((1 - mom) * rv.double() + mom * (var * (n / (n - 1))).mean(0).to(rv.device))


@torch.jit.unused
def _update_running_stats_eager(x: Tensor, rm: Tensor, rv: Tensor, mom: float) -> None:
    """_update_running_stats, also under torch.func's grad and jvp transforms
    and forward-mode AD: from x's primal values with functorch's layers off,
    as torch's own modules update their buffers below those layers (the
    transforms refuse a Python in-place write into a captured buffer)."""
    live = _FUNCTORCH is not None and _FUNCTORCH()
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or not (live or _fwad._current_level >= 0):
        _update_running_stats(x, rm, rv, mom)
        return
    xs = _primal_values(x)
    with torch._C._DisableFuncTorch():
        _update_running_stats(xs, rm, rv, mom)


def _spatial(x: Tensor) -> int:
    n = 1
    for s in x.shape[2:]:
        n *= s
    return n


def _instance_norm_forward(
    input: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    num_features: int,
    affine: bool,
    training: bool,
    track_running_stats: bool,
    momentum: float | None,
    eps: float,
    activation: str | None,
    negative_slope: float,
    no_batch_dim: int,
    padding: list[int],
) -> Tensor:
    """The InstanceNorm{1,2,3}d classes' forward on the module's state
    (torch's semantics and checks), its output reflection-padded by padding
    (torch.nn.functional.pad's pairs; empty: none).  A module-level function, so that
    torch.fx.symbolic_trace records it as one call (torch.fx.wrap below)
    instead of tracing its shape checks; TorchScript compiles it with the
    forward."""
    if input.dim() != no_batch_dim and input.dim() != no_batch_dim + 1:
        raise ValueError(
            "expected "
            + str(no_batch_dim)
            + "D or "
            + str(no_batch_dim + 1)
            + "D input (got "
            + str(input.dim())
            + "D input)"
        )
    unbatched = input.dim() == no_batch_dim
    x = input.unsqueeze(0) if unbatched else input
    C = x.shape[1]
    # the shape checks hold for the shapes a trace records, so a trace
    # skips them (they would turn traced sizes into Python booleans)
    tracing = torch.jit.is_tracing()
    if not tracing and C != num_features and affine:
        raise ValueError(
            "expected input's size at dim=1 to match num_features (" + str(num_features) + "), but got: " + str(C) + "."
        )
    if not tracing and C != num_features and track_running_stats and running_mean is not None:
        # torch refuses it too (its running statistics hold num_features values)
        raise ValueError(
            "expected input's size at dim=1 to match num_features ("
            + str(num_features)
            + ") with track_running_stats=True, but got: "
            + str(C)
            + "."
        )
    a = activation
    act = a if a is not None else ""
    use_input_stats = training or not track_running_stats
    if not tracing and use_input_stats and _spatial(x) == 1:
        # torch's check (the unbiased running_var would be 0 / 0)
        raise ValueError("Expected more than 1 spatial element when training, got input size " + str(x.size()))
    if not use_input_stats:
        rm, rv = running_mean, running_var
        assert rm is not None and rv is not None
        t = (
            None
            if torch.jit.is_scripting()
            else _transformed_normalize(x, rm, rv, weight, bias, eps, act, negative_slope)
        )
        if t is not None:
            y = t
        else:
            y = torch.ops.fastnorm.normalize(x, rm, rv, weight, bias, eps, act, negative_slope)
    else:
        rm, rv = running_mean, running_var
        if track_running_stats and momentum is not None and rm is not None and rv is not None:
            if torch.jit.is_scripting():
                _update_running_stats(x, rm, rv, float(momentum))
            else:
                _update_running_stats_eager(x, rm, rv, float(momentum))
        if len(padding) > 0 and not (True if torch.jit.is_scripting() else _pad_composed(x, weight, bias)):
            # the padded output in the norm's own pass
            y = torch.ops.fastnorm.instance_norm_pad(x, weight, bias, eps, act, negative_slope, padding)
            return y.squeeze(0) if unbatched else y
        e = None if torch.jit.is_scripting() else _eager(x, True, 0, weight, bias, eps, act, negative_slope)
        if e is not None:
            y = e
        else:
            y = torch.ops.fastnorm.instance_norm(x, weight, bias, eps, act, negative_slope)
    if len(padding) > 0:
        y = torch.nn.functional.pad(y, padding, mode="reflect")
    return y.squeeze(0) if unbatched else y


def _exporting() -> bool:
    """Whether torch.export (or the dynamo ONNX exporter, which runs it) is
    tracing: read from torch.compiler's flag itself where it exists, because
    Dynamo has taken torch.compiler.is_exporting() for a constant True in
    every trace, torch.compile's too (fixed in PyTorch in 2026); else
    is_exporting()."""
    flag = getattr(torch.compiler, "_is_exporting_flag", None)
    if flag is not None:
        return bool(flag)
    f = getattr(torch.compiler, "is_exporting", None)
    return f is not None and bool(f())


@torch.jit.unused
def _pad_composed(x: Tensor, weight: Tensor | None, bias: Tensor | None) -> bool:
    """Whether a fused pad runs as the norm and then torch's pad: under a
    torch.func transform or with a forward-mode tangent (the padded operator
    has no rules for them; the norm's own route handles them), and while a
    model is exported (torch.export, both ONNX exporters): the exported graph
    holds the norm operator, which both ONNX exporters translate, and aten's
    reflection pad, so an ONNX export runs without fastnorm."""
    live = _FUNCTORCH is not None and _FUNCTORCH()
    return bool(live or _fwad._current_level >= 0 or torch.onnx.is_in_onnx_export() or _exporting())


torch.fx.wrap("_instance_norm_forward")


class _FastInstanceNorm:
    """forward() shared by the InstanceNorm{1,2,3}d classes (torch semantics),
    on the fastnorm custom operators (TorchScript-compatible code)."""

    activation: str | None
    negative_slope: float
    padding: list[int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.activation = None  # set by convert(fuse_activations=True)
        self.negative_slope = 0.01
        self.padding = []  # set by convert(fuse_padding=True)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # type: ignore[misc]  # torch's Module, after this mixin
        self.__dict__.setdefault("padding", [])  # a module pickled before fuse_padding existed

    def forward(self, input: Tensor) -> Tensor:
        """Normalize ``input`` as torch's module would.

        Parameters
        ----------
        input : torch.Tensor
            (N, C, *spatial), or (C, *spatial) unbatched, with torch's number
            of spatial axes for the class; float16, bfloat16, float32 or
            float64, on the CPU or a CUDA device (channels_last memory is
            kept).

        Returns
        -------
        torch.Tensor
            Of input's shape, dtype and device, followed by the fused
            activation when there is one.

        Raises
        ------
        ValueError
            ``input`` has the wrong number of dimensions, does not have
            ``num_features`` channels (with ``affine`` or running
            statistics), or has one spatial element where its own
            statistics are used (torch's checks).

        Examples
        --------
        >>> import torch, fastnorm.torch as fnt
        >>> x = torch.randn(3, 8, 8)
        >>> torch.allclose(fnt.InstanceNorm2d(3)(x), torch.nn.InstanceNorm2d(3)(x), atol=1e-5)
        True
        """
        return _instance_norm_forward(
            input,
            self.weight,
            self.bias,
            self.running_mean,
            self.running_var,
            self.num_features,
            self.affine,
            self.training,
            self.track_running_stats,
            self.momentum,
            self.eps,
            self.activation,
            self.negative_slope,
            self._get_no_batch_dim(),
            self.padding,
        )

    def extra_repr(self) -> str:
        """Describe the module for its repr: torch's settings and the fused activation.

        Returns
        -------
        str
            torch's ``extra_repr`` followed by ``, activation=...`` (and the
            slope of ``"leaky_relu"``) when an activation is fused.

        Examples
        --------
        >>> import fastnorm.torch as fnt
        >>> fnt.InstanceNorm2d(4).extra_repr()
        '4, eps=1e-05, momentum=0.1, affine=False, bias=False, track_running_stats=False'
        """
        pad = f", padding={self.padding}" if self.padding else ""
        return super().extra_repr() + _act_repr(self) + pad  # type: ignore[misc]  # torch's class, after this mixin


def _act_repr(mod: Any) -> str:
    """The fused activation in a module's repr ("" when there is none)."""
    if mod.activation is None:
        return ""
    slope = f", negative_slope={mod.negative_slope}" if mod.activation == "leaky_relu" else ""
    return f", activation={mod.activation!r}{slope}"


class InstanceNorm1d(_FastInstanceNorm, nn.InstanceNorm1d):
    """``torch.nn.InstanceNorm1d`` on fastnorm's kernels.

    Parameters, buffers, ``state_dict`` keys and semantics (training and
    evaluation, running statistics, unbatched inputs) are torch's; the
    forward pass and its backward run fastnorm's kernels.

    Parameters
    ----------
    *args, **kwargs
        ``torch.nn.InstanceNorm1d``'s constructor arguments: num_features, eps=1e-5,
        momentum=0.1, affine=False, track_running_stats=False (and bias,
        device, dtype where torch has them).

    Attributes
    ----------
    activation : str or None
        The activation applied in the same pass (``"relu"``, ``"leaky_relu"``,
        ``"silu"``), set by ``convert(fuse_activations=True)``; None by default.
    negative_slope : float
        The slope of ``"leaky_relu"``.

    See Also
    --------
    convert : Swap torch's modules in a model for these.

    Examples
    --------
    >>> import torch, fastnorm.torch as fnt
    >>> norm = fnt.InstanceNorm1d(4, affine=True)
    >>> y = norm(torch.randn(2, 4, 16))
    >>> tuple(y.shape), y.dtype
    ((2, 4, 16), torch.float32)
    """


class InstanceNorm2d(_FastInstanceNorm, nn.InstanceNorm2d):
    """``torch.nn.InstanceNorm2d`` on fastnorm's kernels.

    Parameters, buffers, ``state_dict`` keys and semantics (training and
    evaluation, running statistics, unbatched inputs) are torch's; the
    forward pass and its backward run fastnorm's kernels.

    Parameters
    ----------
    *args, **kwargs
        ``torch.nn.InstanceNorm2d``'s constructor arguments: num_features, eps=1e-5,
        momentum=0.1, affine=False, track_running_stats=False (and bias,
        device, dtype where torch has them).

    Attributes
    ----------
    activation : str or None
        The activation applied in the same pass (``"relu"``, ``"leaky_relu"``,
        ``"silu"``), set by ``convert(fuse_activations=True)``; None by default.
    negative_slope : float
        The slope of ``"leaky_relu"``.

    See Also
    --------
    convert : Swap torch's modules in a model for these.

    Examples
    --------
    >>> import torch, fastnorm.torch as fnt
    >>> norm = fnt.InstanceNorm2d(4, affine=True)
    >>> y = norm(torch.randn(2, 4, 8, 8))
    >>> tuple(y.shape), y.dtype
    ((2, 4, 8, 8), torch.float32)
    """


class InstanceNorm3d(_FastInstanceNorm, nn.InstanceNorm3d):
    """``torch.nn.InstanceNorm3d`` on fastnorm's kernels.

    Parameters, buffers, ``state_dict`` keys and semantics (training and
    evaluation, running statistics, unbatched inputs) are torch's; the
    forward pass and its backward run fastnorm's kernels.

    Parameters
    ----------
    *args, **kwargs
        ``torch.nn.InstanceNorm3d``'s constructor arguments: num_features, eps=1e-5,
        momentum=0.1, affine=False, track_running_stats=False (and bias,
        device, dtype where torch has them).

    Attributes
    ----------
    activation : str or None
        The activation applied in the same pass (``"relu"``, ``"leaky_relu"``,
        ``"silu"``), set by ``convert(fuse_activations=True)``; None by default.
    negative_slope : float
        The slope of ``"leaky_relu"``.

    See Also
    --------
    convert : Swap torch's modules in a model for these.

    Examples
    --------
    >>> import torch, fastnorm.torch as fnt
    >>> norm = fnt.InstanceNorm3d(4, affine=True)
    >>> y = norm(torch.randn(2, 4, 4, 4, 4))
    >>> tuple(y.shape), y.dtype
    ((2, 4, 4, 4, 4), torch.float32)
    """


def _verify_group_values(x: Tensor, num_groups: int) -> None:
    """torch.nn.functional.group_norm's check, with its message: refused
    where N * C / num_groups * spatial is 1 (a single value to normalize).
    Wrapped for torch.fx (one call in the graph, not control flow on its
    proxies); skipped under jit.trace, as the other shape checks."""
    if x.dim() < 2 or num_groups < 1 or torch.jit.is_tracing():
        return
    n = x.size(0) * x.size(1) // num_groups
    for s in x.shape[2:]:
        n *= s
    if n == 1:
        raise ValueError(
            "Expected more than 1 value per channel when training, got input size "
            + str([x.size(0) * x.size(1) // num_groups, num_groups] + list(x.shape[2:]))
        )


torch.fx.wrap("_verify_group_values")


class GroupNorm(nn.GroupNorm):
    """``torch.nn.GroupNorm`` on fastnorm's kernels.

    Parameters, buffers, ``state_dict`` keys and semantics (training and
    evaluation, running statistics, unbatched inputs) are torch's; the
    forward pass and its backward run fastnorm's kernels.

    Parameters
    ----------
    *args, **kwargs
        ``torch.nn.GroupNorm``'s constructor arguments: num_groups,
        num_channels, eps=1e-5, affine=True (and bias, device, dtype where
        torch has them).

    Attributes
    ----------
    activation : str or None
        The activation applied in the same pass (``"relu"``, ``"leaky_relu"``,
        ``"silu"``), set by ``convert(fuse_activations=True)``; None by default.
    negative_slope : float
        The slope of ``"leaky_relu"``.

    See Also
    --------
    convert : Swap torch's modules in a model for these.

    Examples
    --------
    >>> import torch, fastnorm.torch as fnt
    >>> norm = fnt.GroupNorm(2, 4)
    >>> y = norm(torch.randn(2, 4, 8, 8))
    >>> tuple(y.shape), y.dtype
    ((2, 4, 8, 8), torch.float32)
    """

    activation: str | None
    negative_slope: float

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.activation = None
        self.negative_slope = 0.01

    def forward(self, input: Tensor) -> Tensor:
        """Normalize ``input`` as ``torch.nn.GroupNorm`` would.

        Parameters
        ----------
        input : torch.Tensor
            (N, C, *spatial) or (N, C); float16, bfloat16, float32 or float64,
            on the CPU or a CUDA device.

        Returns
        -------
        torch.Tensor
            Of input's shape, dtype and device, followed by the fused
            activation when there is one.

        Raises
        ------
        ValueError
            ``input``'s channel count is not ``num_channels`` or not divisible
            by ``num_groups``, or there is one value to normalize
            (N * C / num_groups * spatial is 1: torch's check).

        Examples
        --------
        >>> import torch, fastnorm.torch as fnt
        >>> x = torch.randn(2, 4, 8, 8)
        >>> torch.allclose(fnt.GroupNorm(2, 4)(x), torch.nn.GroupNorm(2, 4)(x), atol=1e-5)
        True
        """
        _verify_group_values(input, self.num_groups)
        a = self.activation
        act = a if a is not None else ""
        e = (
            None
            if torch.jit.is_scripting()
            else _eager(input, False, self.num_groups, self.weight, self.bias, self.eps, act, self.negative_slope)
        )
        if e is not None:
            return e
        return torch.ops.fastnorm.group_norm(
            input, self.num_groups, self.weight, self.bias, self.eps, act, self.negative_slope
        )

    def extra_repr(self) -> str:
        """Describe the module for its repr: torch's settings and the fused activation.

        Returns
        -------
        str
            torch's ``extra_repr`` followed by ``, activation=...`` (and the
            slope of ``"leaky_relu"``) when an activation is fused.

        Examples
        --------
        >>> import fastnorm.torch as fnt
        >>> fnt.GroupNorm(2, 4).extra_repr()
        '2, 4, eps=1e-05, affine=True, bias=True'
        """
        return super().extra_repr() + _act_repr(self)


class FusedActivation(nn.Identity):
    """Stands where ``convert(fuse_activations=True)`` removed an activation.

    It returns its input unchanged (an ``nn.Identity``): the norm before it
    applies the activation in its own pass.  It says which one when the model
    is printed.

    Parameters
    ----------
    activation : str
        The activation the preceding norm applies: ``"relu"``,
        ``"leaky_relu"`` or ``"silu"``.

    Examples
    --------
    >>> import torch, fastnorm.torch as fnt
    >>> model = torch.nn.Sequential(torch.nn.InstanceNorm2d(4), torch.nn.ReLU())
    >>> fnt.convert(model, fuse_activations=True)[1]
    FusedActivation('relu', applied by the norm before it)
    """

    activation: str

    def __init__(self, activation: str) -> None:
        super().__init__()
        self.activation = activation

    def extra_repr(self) -> str:
        """Name the activation and where it went, for the printed model.

        Returns
        -------
        str
            The activation's name and "applied by the norm before it".

        Examples
        --------
        >>> import fastnorm.torch as fnt
        >>> fnt.FusedActivation("silu").extra_repr()
        "'silu', applied by the norm before it"
        """
        return f"{self.activation!r}, applied by the norm before it"


class FusedPad(nn.Identity):
    """Stands where ``convert(fuse_padding=True)`` removed a reflection pad.

    It returns its input unchanged (an ``nn.Identity``): the instance norm
    before it writes its output already reflection-padded, in its own pass.
    It says which padding when the model is printed.

    Parameters
    ----------
    padding : list of int
        The pad's ``padding`` (torch.nn.functional.pad's pairs, last axis
        first) that the preceding norm applies.

    Examples
    --------
    >>> import torch, fastnorm.torch as fnt
    >>> model = torch.nn.Sequential(torch.nn.InstanceNorm2d(4), torch.nn.ReflectionPad2d(1))
    >>> fnt.convert(model, fuse_padding=True)[1]
    FusedPad([1, 1, 1, 1], applied by the norm before it)
    """

    padding: list[int]

    def __init__(self, padding: list[int]) -> None:
        super().__init__()
        self.padding = list(padding)

    def extra_repr(self) -> str:
        """Name the padding and where it went, for the printed model.

        Returns
        -------
        str
            The padding and "applied by the norm before it".

        Examples
        --------
        >>> import fastnorm.torch as fnt
        >>> fnt.FusedPad([1, 1, 1, 1]).extra_repr()
        '[1, 1, 1, 1], applied by the norm before it'
        """
        return f"{self.padding}, applied by the norm before it"


_SWAP = {
    nn.InstanceNorm1d: InstanceNorm1d,
    nn.InstanceNorm2d: InstanceNorm2d,
    nn.InstanceNorm3d: InstanceNorm3d,
    nn.GroupNorm: GroupNorm,
}
_ACTS = {nn.ReLU: ("relu", None), nn.LeakyReLU: ("leaky_relu", "negative_slope"), nn.SiLU: ("silu", None)}


def _swap_class(mod: Any) -> bool:
    """mod made fastnorm's module of its class, in place: the object itself
    (its class swapped: every fastnorm module subclasses torch's, and adds
    only the fused activation's two attributes), so every reference to it,
    its Parameter and buffer objects (an optimizer built before convert()
    keeps training them), requires_grad, hooks, device, dtype and training
    mode stay as they were.  False for a module that is not exactly one of
    torch's instance or group norms."""
    new_cls = _SWAP.get(type(mod))
    if new_cls is None:
        return False
    mod.__class__ = new_cls
    mod.activation = None
    mod.negative_slope = 0.01
    if isinstance(mod, _FastInstanceNorm):
        mod.padding = []
    return True


def _hooked(mod: Any, *, output_only: bool) -> bool:
    """mod has hooks that fusing an activation would change: forward and
    backward hooks (they see the output and its gradient), and with
    output_only False its forward pre-hooks too (an activation's hooks see
    or replace its input)."""
    names = ["_forward_hooks", "_backward_hooks", "_backward_pre_hooks"]
    if not output_only:
        names.append("_forward_pre_hooks")
    return any(getattr(mod, n, None) for n in names)


def convert(model: Any, *, fuse_activations: bool = False, fuse_padding: bool = False) -> Any:
    """Swap torch's instance and group norms in ``model`` for fastnorm's, in place.

    Every ``nn.InstanceNorm{1,2,3}d`` and ``nn.GroupNorm`` (exactly those
    classes, not subclasses) becomes the fastnorm module of the same class
    name: the module object itself, its class swapped, so a module used in
    several places stays one module, and its settings, Parameter and buffer
    objects (an optimizer built before keeps training them),
    ``requires_grad``, hooks, device, dtype and training mode stay as they
    were.

    Parameters
    ----------
    model : torch.nn.Module
        The model; a norm module itself is replaced and returned.
    fuse_activations : bool, default False
        Fold a ReLU / LeakyReLU / SiLU that directly follows a swapped
        module inside an ``nn.Sequential`` into it (one pass over memory);
        its place holds a :class:`FusedActivation`, and the norm's repr
        names the activation.  Only where that gives the same model: the
        container runs ``nn.Sequential``'s own forward, the norm is used in
        no other place, and neither module has hooks that would see the
        change (the norm's forward and backward hooks, any of the
        activation's).
    fuse_padding : bool, default False
        Fold an ``nn.ReflectionPad2d`` that follows a swapped
        ``InstanceNorm2d`` inside an ``nn.Sequential`` (directly, after a fused
        activation's placeholder, or as the first module of the next
        ``nn.Sequential``, as in ``Sequential(ReflectionPad2d, Conv2d)``)
        into the norm: it writes its output already padded, in the same
        pass, where a float32 channels-first batch on the CPU gets the
        engine's padded kernel (other inputs: the norm, then torch's pad);
        its place holds a :class:`FusedPad`.  Under the same conditions as
        the activations (plain ``nn.Sequential`` forwards, each module used
        once, no hooks on either module).  While the model is exported
        (``torch.export``, ``torch.onnx.export`` with either exporter) the
        norm and aten's reflection pad are recorded instead of the padded
        operator (which has no ONNX translation), so an ONNX export runs
        without fastnorm; a ``torch.export`` program loses the fusion.
        (TorchScript always runs the norm and then the pad.)

    Returns
    -------
    torch.nn.Module
        ``model`` itself, changed in place (also when ``model`` is one norm).

    Examples
    --------
    >>> import torch, fastnorm.torch as fnt
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.InstanceNorm2d(4), torch.nn.ReLU())
    >>> model = fnt.convert(model, fuse_activations=True)
    >>> isinstance(model[1], fnt.InstanceNorm2d), model[1].activation
    (True, 'relu')
    """
    if isinstance(model, nn.Module) and _swap_class(model):
        return model
    for mod in model.modules():
        _swap_class(mod)
    if fuse_activations:
        _fuse_activations(model)
    if fuse_padding:
        _fuse_pads(model)
    return model


def _fuse_activations(model: Any) -> None:
    """convert(fuse_activations=True)'s step (see convert)."""
    ours = tuple(_SWAP.values())
    # a norm used in more than one place keeps its output: fusing would
    # change the other uses too
    uses = Counter(id(m) for parent in model.modules() for m in parent._modules.values() if m is not None)
    for parent in list(model.modules()):
        # only nn.Sequential's own forward runs the children one after the
        # other (a subclass may route them otherwise)
        if not isinstance(parent, nn.Sequential) or type(parent).forward is not nn.Sequential.forward:
            continue
        names = list(parent._modules.keys())
        for i, name in enumerate(names[:-1]):
            child, nxt = parent._modules[name], parent._modules[names[i + 1]]
            spec = _ACTS.get(type(nxt))
            if (
                spec is None
                or not isinstance(child, ours)
                or child.activation is not None
                or uses[id(child)] != 1
                or _hooked(child, output_only=True)
                or _hooked(nxt, output_only=False)
            ):
                continue
            child.activation = spec[0]
            if spec[1]:
                child.negative_slope = float(getattr(nxt, spec[1]))
            parent._modules[names[i + 1]] = FusedActivation(spec[0])


#: the pads convert(fuse_padding=True) folds, by norm class: the engine writes
#: padded 2-d planes (both memory formats); elsewhere a fused pad would only
#: move torch's pad into the operator
_PADS = {InstanceNorm2d: nn.ReflectionPad2d}


def _plain_sequential(m: Any) -> bool:
    return isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward


def _fuse_pads(model: Any) -> None:
    """convert(fuse_padding=True)'s step: each fastnorm instance norm whose
    output (through fused activations' placeholders) goes straight into a
    reflection pad of its kind takes that pad over (see convert)."""
    if not isinstance(model, nn.Module):
        return
    uses = Counter(id(m) for parent in model.modules() for m in parent._modules.values() if m is not None)
    for parent in list(model.modules()):
        if not _plain_sequential(parent):
            continue
        names = list(parent._modules.keys())
        for i, name in enumerate(names):
            norm: Any = parent._modules[name]
            pad_kind = _PADS.get(type(norm))
            if pad_kind is None or norm.padding or uses[id(norm)] != 1 or _hooked(norm, output_only=True):
                continue
            j = i + 1
            while j < len(names) and type(parent._modules[names[j]]) is FusedActivation:
                j += 1
            if j >= len(names):
                continue
            holder, key = parent, names[j]
            nxt: Any = parent._modules[key]
            if _plain_sequential(nxt) and uses[id(nxt)] == 1 and not _hooked(nxt, output_only=False) and len(nxt):
                holder, key = nxt, next(iter(nxt._modules))
                nxt = nxt._modules[key]
            if type(nxt) is not pad_kind or uses[id(nxt)] != 1 or _hooked(nxt, output_only=False):
                continue
            if any(int(p) < 0 for p in nxt.padding):  # a cropping pad: not an output the norm writes
                continue
            padding = [int(p) for p in nxt.padding]
            norm.padding = padding
            holder._modules[key] = FusedPad(padding)
