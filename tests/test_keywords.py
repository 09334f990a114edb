"""Every path derived from a public function's signature knows each of its
keywords, or says here why it need not.

A public function is written once (fastnorm._api, fastnorm._backward); its
keywords reach NumPy, CuPy, torch and Dask through its ``locals()``.  Some
paths restate them: the fast-path guard of instance_norm, the keys the torch
layer reads for its operators, the operator schemas and their fake
(meta) functions, the ONNX translations, the calls of fastnorm.torch's
modules and the Dask layer's pass-through.  Each is read from the source
(ast; nothing of torch is imported) and compared with ``inspect.signature``
of the public function, so a keyword added to a signature fails here for
every path that does not know it yet.  The tables of exemptions must be
exact too: an exemption that a path no longer needs fails as well.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import fastnorm
from fastnorm import _api

ROOT = Path(__file__).resolve().parents[1]

PUBLIC = (
    "instance_norm",
    "group_norm",
    "normalize",
    "adain",
    "instance_stats",
    "instance_moments",
    "instance_norm_backward",
    "group_norm_backward",
)


def params(name):
    return list(inspect.signature(getattr(fastnorm, name)).parameters)


def _tree(rel):
    return ast.parse((ROOT / rel).read_text())


def _function(tree, name):
    """The function `name` defined anywhere in tree (the first one)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise AssertionError(f"no function {name}")


def _args(fn):
    return [a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs]


def _keys_read(node, var="kw"):
    """Constant keys read from the dict `var` in node: var["k"], var.get("k")."""
    keys = set()
    for n in ast.walk(node):
        if (
            isinstance(n, ast.Subscript)
            and isinstance(n.value, ast.Name)
            and n.value.id == var
            and isinstance(n.slice, ast.Constant)
        ):
            keys.add(n.slice.value)
        elif (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and n.func.attr == "get"
            and isinstance(n.func.value, ast.Name)
            and n.func.value.id == var
            and n.args
            and isinstance(n.args[0], ast.Constant)
        ):
            keys.add(n.args[0].value)
    return keys


# ------------------------------------------------ the fast path of instance_norm
#: keywords the fast-path guard does not test, and why
FAST_PATH_UNTESTED = {
    "layout": "the dispatch line before it sends every layout= call away",
}


def fast_path_guard_names(tree):
    """The names the guard of instance_norm's fast path tests: the `if` whose
    test starts with ``type(x) is _ndarray``."""
    fn = _function(tree, "instance_norm")
    for node in ast.walk(fn):
        if isinstance(node, ast.If) and isinstance(node.test, ast.BoolOp):
            first = ast.unparse(node.test.values[0])
            if first == "type(x) is _ndarray":
                return {n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)}
    raise AssertionError("instance_norm's fast-path guard not found")


def fast_path_problems(names, signature):
    missing = set(signature) - names - set(FAST_PATH_UNTESTED)
    stale = set(FAST_PATH_UNTESTED) & names
    return {"untested": sorted(missing), "exempt but tested": sorted(stale)}


def test_fast_path_guard_tests_every_keyword():
    problems = fast_path_problems(fast_path_guard_names(_tree("fastnorm/_api.py")), params("instance_norm"))
    assert problems == {"untested": [], "exempt but tested": []}


# ------------------------------------------------------- the torch operators
#: keywords of a public function that its fastnorm:: operator does not take, and why
NOT_IN_OPERATOR = {
    "channel_axis": "fastnorm._torch moves the channel axis to dim 1 (a view) before the operator",
    "layout": "mapped to channel_axis by _api._dispatch before the torch layer",
    "dtype": "refused when an input requires grad, and the operator's output is x's dtype",
    "out": "refused when an input requires grad (autograd does not track writes into out)",
    "num_threads": "operators run with the thread policy's default (fastnorm._threads)",
}


def operators(tree):
    """{operator name: its parameters} of the @torch.library.custom_op functions."""
    ops = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for d in node.decorator_list:
                if isinstance(d, ast.Call) and ast.unparse(d.func) == "torch.library.custom_op":
                    ops[d.args[0].value.removeprefix("fastnorm::")] = _args(node)
    return ops


def fakes(tree):
    """{operator name: the parameters of its register_fake function}."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for d in node.decorator_list:
                if isinstance(d, ast.Attribute) and d.attr == "register_fake":
                    out[d.value.id] = _args(node)
    return out


def operator_problems(ops, name, signature):
    op = ops[name]
    return {
        "not in the operator": sorted(set(signature) - set(op) - set(NOT_IN_OPERATOR)),
        "not in the public function": sorted(set(op) - set(signature)),
        "exempt but in the operator": sorted(set(op) & set(NOT_IN_OPERATOR)),
    }


def _ops_of_public():
    ops = operators(_tree("fastnorm/_torch_ops.py"))
    return ops, [n for n in PUBLIC if n in ops]


def test_operators_are_those_of_public_functions():
    ops, named = _ops_of_public()
    # moments: the statistics of the modules' training pass; instance_norm_pad:
    # the modules' fused reflection pad (convert(fuse_padding=True))
    assert set(ops) - set(named) == {"moments", "instance_norm_pad"}
    assert {"instance_norm", "group_norm", "normalize", "adain"} <= set(named)


@pytest.mark.parametrize("name", _ops_of_public()[1])
def test_operator_schema_has_every_keyword(name):
    ops, _ = _ops_of_public()
    assert operator_problems(ops, name, params(name)) == {
        "not in the operator": [],
        "not in the public function": [],
        "exempt but in the operator": [],
    }


def test_fakes_take_the_operators_parameters():
    tree = _tree("fastnorm/_torch_ops.py")
    assert fakes(tree) == operators(tree)


def torch_keys(tree):
    """The keys fastnorm._torch reads for the operators (the operator call and
    the refusals before it), and the public functions that have one."""
    keys = _keys_read(_function(tree, "_op_call")) | _keys_read(_function(tree, "_autograd_call"))
    ops = next(
        ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "_OPERATORS"
    )
    return keys, ops


#: keywords fastnorm._torch hands to the operators without reading them by name
TORCH_UNREAD = {
    "x": "the first argument (kw[first])",
    "content": "the first argument (kw[first])",
    "layout": NOT_IN_OPERATOR["layout"],
    "num_threads": NOT_IN_OPERATOR["num_threads"],
}


def torch_problems(keys, signature):
    return sorted(set(signature) - keys - set(TORCH_UNREAD))


def test_torch_layer_reads_every_keyword_of_an_operator_function():
    keys, ops = torch_keys(_tree("fastnorm/_torch.py"))
    for name in ops:
        assert torch_problems(keys, params(name)) == [], name
    assert not (keys & set(TORCH_UNREAD)), "an exemption is read: remove it from TORCH_UNREAD"


def test_onnx_translations_take_the_operators_parameters():
    onnx = _tree("fastnorm/_torch_onnx.py")
    schema = operators(_tree("fastnorm/_torch_ops.py"))
    table = _function(onnx, "onnx_translation_table")
    legacy = _function(onnx, "register_legacy_symbolics")
    translated = [n.name for n in table.body if isinstance(n, ast.FunctionDef) and n.name in schema]
    assert {"instance_norm", "group_norm", "normalize"} <= set(translated)
    for name in translated:
        assert _args(_function(table, name)) == schema[name], name
        # the legacy symbolics take the graph first, then the operator's arguments in order
        assert len(_args(_function(legacy, name))) == 1 + len(schema[name]), name


def test_fastnorm_torch_calls_the_operators_with_every_argument():
    schema = operators(_tree("fastnorm/_torch_ops.py"))
    calls = [
        n
        for n in ast.walk(_tree("fastnorm/torch.py"))
        if isinstance(n, ast.Call) and ast.unparse(n.func).startswith("torch.ops.fastnorm.")
    ]
    assert calls
    for c in calls:
        name = ast.unparse(c.func).removeprefix("torch.ops.fastnorm.")
        assert len(c.args) + len(c.keywords) == len(schema[name]), ast.unparse(c)


# ---------------------------------------------------------------------- Dask
#: keywords the Dask layer leaves to _dispatch
DASK_UNREAD = {"layout": NOT_IN_OPERATOR["layout"]}


def dask_problems(tree, name, signature):
    """Keywords of the public function `name` its Dask counterpart neither
    reads nor passes on: read by name (kw["..."]) anywhere in fastnorm._dask,
    or, for the functions whose normalize pass runs on given coefficients,
    consumed before it (_NOT_APPLY) or a keyword of _api.apply_coefs."""
    keys = _keys_read(tree)
    missing = sorted(set(signature) - keys - set(DASK_UNREAD))
    not_apply = next(
        ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "_NOT_APPLY"
    )
    applies = {"_apply", "_split_norm"} & {
        n.func.id for n in ast.walk(_function(tree, name)) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }
    lost = []
    if applies:
        apply_kw = set(inspect.signature(_api.apply_coefs).parameters)
        lost = sorted(set(signature) - set(not_apply) - apply_kw)
    return {"not read": missing, "not passed to the normalize pass": lost}


@pytest.mark.parametrize("name", PUBLIC)
def test_dask_layer_takes_every_keyword(name):
    tree = _tree("fastnorm/_dask.py")
    assert dask_problems(tree, name, params(name)) == {"not read": [], "not passed to the normalize pass": []}
    assert not (_keys_read(tree) & set(DASK_UNREAD))


# -------------------------------------------------- the checks can fail
def test_a_new_keyword_is_caught_on_every_path():
    """A keyword added to instance_norm's signature alone (the derived paths
    unchanged) is flagged by each check above."""
    sig = params("instance_norm") + ["clip"]
    api = _tree("fastnorm/_api.py")
    assert fast_path_problems(fast_path_guard_names(api), sig)["untested"] == ["clip"]
    ops, _ = _ops_of_public()
    assert operator_problems(ops, "instance_norm", sig)["not in the operator"] == ["clip"]
    keys, _ = torch_keys(_tree("fastnorm/_torch.py"))
    assert torch_problems(keys, sig) == ["clip"]
    assert dask_problems(_tree("fastnorm/_dask.py"), "instance_norm", sig) == {
        "not read": ["clip"],
        "not passed to the normalize pass": ["clip"],
    }
    # an operator that gains it: its fake, its ONNX translation and the modules' calls must follow
    src = (ROOT / "fastnorm/_torch_ops.py").read_text()
    head = '@torch.library.custom_op("fastnorm::instance_norm", mutates_args=(), tags=_ANY_STRIDES)\n'
    grown = src.replace(
        head + "def instance_norm(\n    x: Tensor,",
        head + "def instance_norm(\n    x: Tensor,\n    clip: float,",
    )
    assert grown != src
    assert fakes(ast.parse(grown)) != operators(ast.parse(grown))
