"""The peers of ``python -m fastnorm bench``: what fastnorm is timed against
(a parallel copy, plain NumPy, torch, ONNX Runtime) and fastnorm itself, each
a ``Peer`` whose ``make`` returns the callable to time.  A peer imports its
library only when it runs, so importing this module needs NumPy only."""

from __future__ import annotations

import importlib.util

import numpy as np


class Peer:
    """A competitor: ``make(x, layout, nt)`` returns a zero-argument callable
    or None when the peer cannot run this case."""

    name = "peer"
    title = "a peer"  # how the footer's sentences name it

    def available(self):
        return True

    def make(self, x, layout, nt, op="instance_norm", groups=None, activation=None):
        raise NotImplementedError


BACKWARD_OPS = ("instance_norm_backward", "group_norm_backward")


def _copy_arrays(x, op):
    """Source and destination of the copy limit: x itself for a forward (x
    in, y out); for a backward 1.5 x's bytes each way, the bytes of x and
    grad_out in and grad_x out."""
    if op not in BACKWARD_OPS:
        return x, np.empty_like(x)
    src = np.ones(3 * x.nbytes // 2, np.uint8)
    return src, np.empty_like(src)


def _grad_out(x):
    """The upstream gradient of a backward case: x's shape and dtype, fixed seed."""
    return np.random.default_rng(1).standard_normal(x.shape).astype(x.dtype)


class Copy(Peer):
    name = "copy"

    def make(self, x, layout, nt, op="instance_norm", groups=None, activation=None):
        from .._cpu import _engine as E

        s, y = _copy_arrays(x, op)
        return lambda: E.parallel_copy(s, y, nt, 0)


class StreamCopy(Peer):
    """The same copy with non-temporal stores; the table's ceiling ("copy")
    is the faster of the two, measured in the same run."""

    name = "copy_nt"

    def make(self, x, layout, nt, op="instance_norm", groups=None, activation=None):
        from .._cpu import _engine as E

        s, y = _copy_arrays(x, op)
        return lambda: E.parallel_copy(s, y, nt, 1)


class Fastnorm(Peer):
    """fastnorm as users call it, ``y = fastnorm.instance_norm(x)``: the call
    allocates its output, as the NumPy and torch peers do, so the ratios to
    them compare like with like."""

    name = "fastnorm"

    def make(self, x, layout, nt, op="instance_norm", groups=None, activation=None):
        import fastnorm

        ax = 1 if layout == "cf" else -1
        if op in BACKWARD_OPS:
            dy = _grad_out(x)
            if op == "group_norm_backward":
                return lambda: fastnorm.group_norm_backward(dy, x, groups, channel_axis=ax, num_threads=nt)
            return lambda: fastnorm.instance_norm_backward(dy, x, channel_axis=ax, num_threads=nt)
        if op == "group_norm":
            return lambda: fastnorm.group_norm(x, groups, channel_axis=ax, activation=activation, num_threads=nt)
        return lambda: fastnorm.instance_norm(x, channel_axis=ax, activation=activation, num_threads=nt)


class FastnormOut(Peer):
    """fastnorm writing into a preallocated ``out=``: the kernel's time
    without the allocation and first touch of a fresh output."""

    name = "fastnorm_out"

    def make(self, x, layout, nt, op="instance_norm", groups=None, activation=None):
        import fastnorm

        if op in BACKWARD_OPS:
            return None  # the backward has no out=
        ax = 1 if layout == "cf" else -1
        y = np.empty_like(x)
        if op == "group_norm":
            return lambda: fastnorm.group_norm(x, groups, channel_axis=ax, activation=activation, out=y, num_threads=nt)
        return lambda: fastnorm.instance_norm(x, channel_axis=ax, activation=activation, out=y, num_threads=nt)


class NumpyPeer(Peer):
    """The plain NumPy implementation a user would write."""

    name = "numpy"
    title = "plain NumPy"

    def make(self, x, layout, nt, op="instance_norm", groups=None, activation=None):
        if op != "instance_norm" or activation:
            return None
        ax = tuple(range(2, x.ndim)) if layout == "cf" else tuple(range(1, x.ndim - 1))

        def run():
            mean = x.mean(axis=ax, keepdims=True)
            var = x.var(axis=ax, keepdims=True)
            return (x - mean) / np.sqrt(var + 1e-5)

        return run


class TorchInstanceNorm(Peer):
    name = "torch_in"
    title = "torch.nn.functional.instance_norm"

    def available(self):
        return importlib.util.find_spec("torch") is not None

    def _tensor(self, x, layout):
        import torch

        t = torch.from_numpy(x)
        return t if layout == "cf" else t.movedim(-1, 1)  # channels_last memory, NC... view

    def _backward(self, x, layout, nt, forward):
        """The backward alone of y = forward(x, weight, bias): autograd.grad
        of a retained graph with a fixed grad_out, weight and bias requiring
        grad (the gradients fastnorm's backward returns)."""
        import torch

        torch.set_num_threads(nt)
        xt = self._tensor(x, layout).detach().requires_grad_()
        C = xt.shape[1]
        w = torch.ones(C, dtype=xt.dtype, requires_grad=True)
        b = torch.zeros(C, dtype=xt.dtype, requires_grad=True)
        y = forward(xt, w, b)
        dy = self._tensor(_grad_out(x), layout)
        return lambda: torch.autograd.grad(y, (xt, w, b), dy, retain_graph=True)

    def make(self, x, layout, nt, op="instance_norm", groups=None, activation=None):
        import torch
        import torch.nn.functional as F

        if x.dtype == np.float16:
            return None  # torch CPU instance_norm has no float16 kernel
        if op == "instance_norm_backward":
            return self._backward(x, layout, nt, lambda t, w, b: F.instance_norm(t, weight=w, bias=b, eps=1e-5))
        if op != "instance_norm":
            return None
        torch.set_num_threads(nt)
        t = self._tensor(x, layout)
        act = {None: None, "relu": torch.relu, "silu": F.silu, "leaky_relu": F.leaky_relu}[activation]

        def run():
            with torch.inference_mode():
                y = F.instance_norm(t, eps=1e-5)
                return act(y) if act else y

        return run


class TorchGroupNorm(TorchInstanceNorm):
    """torch group_norm with num_groups = C (instance norm) or the given groups."""

    name = "torch_gn"
    title = "torch.nn.functional.group_norm"

    def make(self, x, layout, nt, op="instance_norm", groups=None, activation=None):
        import torch
        import torch.nn.functional as F

        if x.dtype == np.float16:
            return None
        if op in BACKWARD_OPS:
            G = x.shape[1 if layout == "cf" else -1] if op == "instance_norm_backward" else groups
            return self._backward(x, layout, nt, lambda t, w, b: F.group_norm(t, G, w, b, eps=1e-5))
        torch.set_num_threads(nt)
        t = self._tensor(x, layout)
        G = t.shape[1] if op == "instance_norm" else groups
        act = {None: None, "relu": torch.relu, "silu": F.silu, "leaky_relu": F.leaky_relu}[activation]

        def run():
            with torch.inference_mode():
                y = F.group_norm(t, G, eps=1e-5)
                return act(y) if act else y

        return run


class TorchCompile(TorchInstanceNorm):
    """What torch.compile (inductor, default mode, fullgraph, static shapes)
    generates for ``act(instance_norm(x))``: the fused code a deployer gets
    without fastnorm.  Compiled once per case in ``make`` (seconds: inductor
    writes and builds C++), for the case's thread count (its OpenMP regions
    take the team size at compile time)."""

    name = "torch_compile"
    title = "torch.compile's generated instance_norm"

    def make(self, x, layout, nt, op="instance_norm", groups=None, activation=None):
        import torch
        import torch.nn.functional as F

        if x.dtype == np.float16 or op not in ("instance_norm", "group_norm"):
            return None
        torch.set_num_threads(nt)
        torch._dynamo.reset()  # a fresh compile: the cache does not key on the thread count
        t = self._tensor(x, layout)
        G = t.shape[1] if op == "instance_norm" else groups
        act = {None: None, "relu": torch.relu, "silu": F.silu, "leaky_relu": F.leaky_relu}[activation]

        def f(t):
            y = F.instance_norm(t, eps=1e-5) if op == "instance_norm" else F.group_norm(t, G, eps=1e-5)
            return act(y) if act else y

        g = torch.compile(f, fullgraph=True, dynamic=False)

        def run():
            with torch.inference_mode():
                return g(t)

        run()  # compile here, not in the first timed call
        return run


class OnnxRuntime(Peer):
    name = "onnxruntime"
    title = "ONNX Runtime's InstanceNormalization"

    def available(self):
        return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None

    def make(self, x, layout, nt, op="instance_norm", groups=None, activation=None):
        if layout != "cf" or op != "instance_norm" or activation or x.dtype != np.float32:
            return None  # ORT's CPU InstanceNormalization: channels-first float32 only
        import onnxruntime as ort
        from onnx import TensorProto, helper

        C = x.shape[1]
        et = TensorProto.FLOAT if x.dtype == np.float32 else TensorProto.DOUBLE
        node = helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=1e-5)
        graph = helper.make_graph(
            [node],
            "in",
            [helper.make_tensor_value_info("x", et, list(x.shape))],
            [helper.make_tensor_value_info("y", et, list(x.shape))],
            [
                helper.make_tensor("s", et, [C], np.ones(C, x.dtype).tolist()),
                helper.make_tensor("b", et, [C], np.zeros(C, x.dtype).tolist()),
            ],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        so = ort.SessionOptions()
        so.intra_op_num_threads = nt
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        feed = {"x": x}
        return lambda: sess.run(None, feed)


CEILING = ("copy", "copy_nt")
OURS = ("fastnorm", "fastnorm_out")  # always measured, never a peer column
PEERS = [
    Copy(),
    StreamCopy(),
    Fastnorm(),
    FastnormOut(),
    NumpyPeer(),
    TorchInstanceNorm(),
    TorchGroupNorm(),
    TorchCompile(),
    OnnxRuntime(),
]


PEER_NAMES = tuple(p.name for p in PEERS if p.name not in CEILING + OURS)
PEER_TITLES = {p.name: p.title for p in PEERS}


# the modules a peer imports, and the pip argument that installs each
PEER_NEEDS = {
    "torch_in": ("torch",),
    "torch_gn": ("torch",),
    "torch_compile": ("torch",),
    "onnxruntime": ("onnxruntime", "onnx"),
}
PIP_ARGS = {"torch": "torch", "onnxruntime": '".[bench]"', "onnx": '".[bench]"'}


def _have(module):
    return importlib.util.find_spec(module) is not None


def install_hint(missing, have=None):
    """How to install the peers named in ``missing``, naming only the modules
    that are absent: "install torch and onnxruntime (pip install ".[bench]"
    torch)"; "" when none is absent.  ``have(module)`` defaults to _have."""
    have = have or _have
    mods = []
    for n in missing:
        for m in PEER_NEEDS.get(n, ()):
            if m not in mods and not have(m):
                mods.append(m)
    if not mods:
        return ""
    pip = sorted({PIP_ARGS[m] for m in mods})
    return f"install {' and '.join(mods)} (pip install {' '.join(pip)})"


def peers_available(names=None):
    out = [p for p in PEERS if p.available()]
    if names is not None:
        out = [p for p in out if p.name in names or p.name in CEILING + OURS]
    return out
