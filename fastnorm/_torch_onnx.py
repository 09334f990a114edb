"""ONNX export of the fastnorm:: operators as standard ONNX nodes, so an
exported model runs in ONNX Runtime (or any ONNX backend) without fastnorm.

- instance norm: one InstanceNormalization node (weight and bias as its
  scale and B, ones and zeros when absent);
- group norm: Reshape to (N, G, -1), InstanceNormalization, Reshape back,
  then the per-channel affine (Mul, Add), as torch's own exporter writes it;
- normalize with (C,) statistics (evaluation with running statistics): one
  BatchNormalization node (inference form: exactly the same formula);
- activations: Relu, LeakyRelu, and x * Sigmoid(x) for silu.

Two exporters: the dynamo exporter (``torch.onnx.export(..., dynamo=True,
custom_translation_table=fastnorm.torch.onnx_translation_table())``; needs
onnxscript) and the TorchScript-based one (``dynamo=False``), whose symbolic
functions are registered when fastnorm.torch is imported.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

#: the opset the symbolic functions are registered for (and above)
OPSET = 17


# ------------------------------------------------------------ dynamo exporter
def onnx_translation_table() -> dict[Any, Any]:
    """Return the dynamo ONNX exporter's translations of fastnorm's operators.

    Pass it as ``torch.onnx.export(model, args, path, dynamo=True,
    custom_translation_table=fastnorm.torch.onnx_translation_table())``: the
    norms are written as standard InstanceNormalization (and, for group norm,
    Reshape, Mul, Add) or BatchNormalization nodes, so ONNX Runtime runs the
    model without fastnorm.  Needs onnxscript.

    Returns
    -------
    dict
        ``{torch.ops.fastnorm.<op>.default: onnxscript function}`` for
        ``instance_norm``, ``group_norm`` and ``normalize``.

    Raises
    ------
    ModuleNotFoundError
        onnxscript is not installed.

    Examples
    --------
    >>> import fastnorm.torch as fnt
    >>> sorted(str(op) for op in fnt.onnx_translation_table())
    ['fastnorm.group_norm.default', 'fastnorm.instance_norm.default', 'fastnorm.normalize.default']
    """
    from onnxscript import opset18

    op: Any = opset18  # traced here: values are the exporter's, not onnxscript's typed ones

    def act(y: Any, activation: str, slope: float) -> Any:
        if activation == "relu":
            return op.Relu(y)
        if activation == "leaky_relu":
            return op.LeakyRelu(y, alpha=slope)
        if activation == "silu":
            return op.Mul(y, op.Sigmoid(y))
        return y

    def ones_like_dim(x: Any, dim_of: Any, value: float) -> Any:
        c = op.Shape(dim_of, start=1, end=2)
        return op.CastLike(op.Expand(op.Constant(value_float=value), c), x)

    def group_norm(
        x: Any,
        num_groups: int,
        weight: Any = None,
        bias: Any = None,
        eps: float = 1e-5,
        activation: str = "",
        negative_slope: float = 0.01,
    ) -> Any:
        shape = op.Shape(x)
        g = op.Reshape(x, op.Constant(value_ints=[0, num_groups, -1]))
        y = op.InstanceNormalization(g, ones_like_dim(x, g, 1.0), ones_like_dim(x, g, 0.0), epsilon=eps)
        y = op.Reshape(y, shape)
        if weight is not None or bias is not None:
            cshape = op.Concat(
                op.Constant(value_ints=[-1]),
                op.Expand(op.Constant(value_ints=[1]), op.Sub(op.Size(shape), op.Constant(value_ints=[2]))),
                axis=0,
            )
            if weight is not None:
                y = op.Mul(y, op.Reshape(op.CastLike(weight, x), cshape))
            if bias is not None:
                y = op.Add(y, op.Reshape(op.CastLike(bias, x), cshape))
        return act(y, activation, negative_slope)

    def normalize(
        x: Any,
        mean: Any,
        var: Any,
        weight: Any = None,
        bias: Any = None,
        eps: float = 1e-5,
        activation: str = "",
        negative_slope: float = 0.01,
    ) -> Any:
        _per_channel_stats(_rank(mean), _rank(var))
        one, zero = ones_like_dim(x, x, 1.0), ones_like_dim(x, x, 0.0)
        w = op.CastLike(weight, x) if weight is not None else one
        b = op.CastLike(bias, x) if bias is not None else zero
        y = op.BatchNormalization(x, w, b, op.CastLike(mean, x), op.CastLike(var, x), epsilon=eps, training_mode=0)
        return act(y, activation, negative_slope)

    def instance_norm(
        x: Any,
        weight: Any = None,
        bias: Any = None,
        eps: float = 1e-5,
        activation: str = "",
        negative_slope: float = 0.01,
    ) -> Any:
        w = op.CastLike(weight, x) if weight is not None else ones_like_dim(x, x, 1.0)
        b = op.CastLike(bias, x) if bias is not None else ones_like_dim(x, x, 0.0)
        return act(op.InstanceNormalization(x, w, b, epsilon=eps), activation, negative_slope)

    return {
        torch.ops.fastnorm.instance_norm.default: instance_norm,
        torch.ops.fastnorm.group_norm.default: group_norm,
        torch.ops.fastnorm.normalize.default: normalize,
    }


# ------------------------------------------- TorchScript-based (legacy) exporter
def _legacy_act(g: Any, y: Any, activation: str, slope: float) -> Any:
    if activation == "relu":
        return g.op("Relu", y)
    if activation == "leaky_relu":
        return g.op("LeakyRelu", y, alpha_f=slope)
    if activation == "silu":
        return g.op("Mul", y, g.op("Sigmoid", y))
    return y


def _legacy_fill(g: Any, x: Any, dim_of: Any, value: float) -> Any:
    c = g.op(
        "Slice",
        g.op("Shape", dim_of),
        g.op("Constant", value_t=torch.tensor([1])),
        g.op("Constant", value_t=torch.tensor([2])),
    )
    return g.op("CastLike", g.op("Expand", g.op("Constant", value_t=torch.tensor(value)), c), x)


def _rank(v: Any) -> int | None:
    """The rank of a traced value where the exporter knows it."""
    try:
        return len(v.shape)
    except (AttributeError, TypeError):
        return None


def _per_channel_stats(*ranks: int | None) -> None:
    """fastnorm::normalize exports as BatchNormalization, whose statistics are
    (C,): per-sample (N, C) ones would write a model ONNX Runtime refuses to
    load, so the export stops here instead."""
    if any(r is not None and r != 1 for r in ranks):
        raise ValueError(
            "fastnorm::normalize exports to ONNX as BatchNormalization, which takes per-channel (C,) "
            f"mean and var; got statistics of rank {max(r for r in ranks if r is not None)} (per-sample "
            "(N, C) statistics have no ONNX translation)"
        )


def register_legacy_symbolics(opset: int = OPSET) -> None:
    from torch.onnx import symbolic_helper as sh

    @sh.parse_args("v", "i", "v", "v", "f", "s", "f")
    def group_norm(
        g: Any, x: Any, num_groups: int, weight: Any, bias: Any, eps: float, activation: str, slope: float
    ) -> Any:
        shape = g.op("Shape", x)
        xg = g.op("Reshape", x, g.op("Constant", value_t=torch.tensor([0, num_groups, -1])))
        y = g.op("InstanceNormalization", xg, _legacy_fill(g, x, xg, 1.0), _legacy_fill(g, x, xg, 0.0), epsilon_f=eps)
        y = g.op("Reshape", y, shape)
        rank = sh._get_tensor_rank(x)
        cshape = g.op("Constant", value_t=torch.tensor([-1] + [1] * ((rank or 4) - 2)))
        if not sh._is_none(weight):
            y = g.op("Mul", y, g.op("Reshape", g.op("CastLike", weight, x), cshape))
        if not sh._is_none(bias):
            y = g.op("Add", y, g.op("Reshape", g.op("CastLike", bias, x), cshape))
        return _legacy_act(g, y, activation, slope)

    @sh.parse_args("v", "v", "v", "v", "v", "f", "s", "f")
    def normalize(
        g: Any, x: Any, mean: Any, var: Any, weight: Any, bias: Any, eps: float, activation: str, slope: float
    ) -> Any:
        _per_channel_stats(sh._get_tensor_rank(mean), sh._get_tensor_rank(var))
        w = g.op("CastLike", weight, x) if not sh._is_none(weight) else _legacy_fill(g, x, x, 1.0)
        b = g.op("CastLike", bias, x) if not sh._is_none(bias) else _legacy_fill(g, x, x, 0.0)
        y = g.op("BatchNormalization", x, w, b, g.op("CastLike", mean, x), g.op("CastLike", var, x), epsilon_f=eps)
        return _legacy_act(g, y, activation, slope)

    @sh.parse_args("v", "v", "v", "f", "s", "f")
    def instance_norm(g: Any, x: Any, weight: Any, bias: Any, eps: float, activation: str, slope: float) -> Any:
        w = g.op("CastLike", weight, x) if not sh._is_none(weight) else _legacy_fill(g, x, x, 1.0)
        b = g.op("CastLike", bias, x) if not sh._is_none(bias) else _legacy_fill(g, x, x, 0.0)
        return _legacy_act(g, g.op("InstanceNormalization", x, w, b, epsilon_f=eps), activation, slope)

    torch.onnx.register_custom_op_symbolic("fastnorm::instance_norm", instance_norm, opset)
    torch.onnx.register_custom_op_symbolic("fastnorm::group_norm", group_norm, opset)
    torch.onnx.register_custom_op_symbolic("fastnorm::normalize", normalize, opset)


# ------------------------------------------------------- a failed export's hint
EXPORT_HINT = (
    "This model calls fastnorm's operators (fastnorm::...): the dynamo exporter translates them "
    "when given their table, torch.onnx.export(..., dynamo=True, "
    "custom_translation_table=fastnorm.torch.onnx_translation_table()) (needs onnxscript), "
    "or use the TorchScript exporter, torch.onnx.export(..., dynamo=False)."
)


#: operators neither exporter translates
UNTRANSLATED = ("adain", "moments", "instance_norm_pad")


def _untranslated(e: BaseException | None) -> list[str]:
    """The fastnorm operators without a translation that e (or an exception
    it was raised from) names."""
    found: list[str] = []
    seen = 0
    while e is not None and seen < 16:
        for name in UNTRANSLATED:
            if (f"fastnorm::{name}" in str(e) or f"fastnorm.{name}" in str(e)) and name not in found:
                found.append(name)
        e = e.__cause__ or e.__context__
        seen += 1
    return found


def _mentions_fastnorm(e: BaseException | None) -> bool:
    """Whether e or an exception it was raised from names a fastnorm operator."""
    seen = 0
    while e is not None and seen < 16:
        if "fastnorm." in str(e) or "fastnorm::" in str(e):
            return True
        e = e.__cause__ or e.__context__
        seen += 1
    return False


def _given_table(kwargs: dict[str, Any]) -> bool:
    table = kwargs.get("custom_translation_table") or {}
    return any(getattr(k, "namespace", None) == "fastnorm" for k in table)


def install_export_hint() -> None:
    """Wrap torch.onnx.export (once) so that an export failing on a fastnorm
    operator without its translation table says how to pass it: the hint is
    added to the exception (a note, shown under its traceback; on Python 3.10
    appended to its message); the exception and everything else are torch's."""
    export = torch.onnx.export
    if getattr(export, "_fastnorm_hint", False):
        return

    def hinted_export(*args: Any, **kwargs: Any) -> Any:
        try:
            return export(*args, **kwargs)
        except Exception as e:
            missing = _untranslated(e)
            hint = None
            if missing:
                ops = " and ".join(f"fastnorm::{n}" for n in missing)
                hint = (
                    f"{ops} has no ONNX translation in either exporter: export the model in eval mode "
                    "(an InstanceNorm that tracks running statistics updates them through fastnorm::moments "
                    "in training mode), without AdaIN calls (fastnorm::adain), and as the nn.Module itself, not a "
                    "torch.jit.trace of it (a module converted with fuse_padding records fastnorm::instance_norm_pad "
                    "in a trace; an export records the norm and a standard pad)."
                )
            elif _mentions_fastnorm(e) and not _given_table(kwargs):
                hint = EXPORT_HINT
            if hint is not None:
                if hasattr(e, "add_note"):
                    e.add_note(hint)
                elif e.args and isinstance(e.args[0], str):
                    e.args = (e.args[0] + "\n\n" + hint,) + e.args[1:]
            raise

    functools.update_wrapper(hinted_export, export)
    hinted_export._fastnorm_hint = True  # type: ignore[attr-defined]
    torch.onnx.export = hinted_export
