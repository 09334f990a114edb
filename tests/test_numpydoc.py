"""Every public function, class and method has a complete numpydoc docstring:
numpydoc's own validation (every parameter documented and described, a
Returns section with descriptions, a one-line summary ending in a period, an
example), plus a Raises section for every function that checks its input."""

import importlib
import inspect

import pytest
from _optional import require

numpydoc_validate = require("numpydoc.validate", reason="numpydoc is not installed (the test extra)")

#: the numpydoc checks that must pass
CHECKS = {
    "GL02",  # closing quotes on a line of their own
    "GL03",  # no double blank lines
    "GL08",  # a docstring
    "SS01",  # a summary
    "SS03",  # the summary ends with a period
    "SS05",  # the summary starts with an infinitive verb
    "PR01",  # every parameter documented
    "PR02",  # no unknown parameter documented
    "PR03",  # parameters in the signature's order
    "PR07",  # every parameter described
    "PR08",  # descriptions start with a capital letter
    "RT01",  # a Returns section
    "RT02",  # one type per return value's first line
    "RT03",  # every return value described
    "EX01",  # an Examples section
}

#: public functions that validate their input, so document what they raise
RAISING = {
    "fastnorm.instance_norm",
    "fastnorm.instance_stats",
    "fastnorm.group_norm",
    "fastnorm.normalize",
    "fastnorm.adain",
    "fastnorm.instance_moments",
    "fastnorm.merge_moments",
    "fastnorm.instance_norm_backward",
    "fastnorm.group_norm_backward",
    "fastnorm.show_config",
    "fastnorm.Moments.merge",
    "fastnorm.InstanceNorm",
    "fastnorm.InstanceNorm.__call__",
    "fastnorm.InstanceNorm.load_state_dict",
    "fastnorm.torch.InstanceNorm2d.forward",
    "fastnorm.torch.GroupNorm.forward",
}


def _public(modname, names):
    """Import paths of the module's public objects and of the public methods
    and properties that fastnorm defines on its classes (not torch's)."""
    mod = importlib.import_module(modname)
    out = []
    for name in names:
        if name.startswith("__"):
            continue
        obj = getattr(mod, name)
        out.append(f"{modname}.{name}")
        if inspect.isclass(obj):
            for attr in sorted(dir(obj)):
                if attr.startswith("_") and attr != "__call__":
                    continue
                member = inspect.getattr_static(obj, attr)
                fn = member.fget if isinstance(member, property) else member
                if callable(fn) and getattr(fn, "__module__", "").startswith("fastnorm"):
                    out.append(f"{modname}.{name}.{attr}")
    return out


def _names():
    import fastnorm

    names = _public("fastnorm", fastnorm.__all__)
    try:
        import fastnorm.torch as fnt
    except ImportError:
        return names
    return names + _public("fastnorm.torch", fnt.__all__)


def test_the_list_covers_the_api():
    names = _names()
    for expected in ("fastnorm.instance_norm", "fastnorm.Moments.var", "fastnorm.InstanceNorm.load_state_dict"):
        assert expected in names


@pytest.mark.parametrize("name", _names())
def test_numpydoc_docstring(name):
    res = numpydoc_validate.validate(name)
    errors = [f"{code} {msg}" for code, msg in res["errors"] if code in CHECKS]
    assert not errors, f"{name}:\n" + "\n".join(errors)
    if name in RAISING:
        from numpydoc.docscrape import NumpyDocString

        assert NumpyDocString(inspect.getdoc(_load(name)))["Raises"], f"{name} has no Raises section"


def _load(name):
    """The object at an import path such as fastnorm.InstanceNorm.load_state_dict."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(name)


def test_docstrings_state_the_output_dtypes():
    """help() tells what integer and half-precision inputs give."""
    import fastnorm

    def text(fn):
        return " ".join(fn.__doc__.split())

    doc = text(fastnorm.instance_norm)
    for words in ("layout : str", "dtype : dtype", "uint8", "float32 for integer inputs"):
        assert words in doc, words
    assert "float64 for float64 and integer inputs" in text(fastnorm.instance_stats)
    for fn in (fastnorm.group_norm, fastnorm.normalize, fastnorm.adain):
        assert "Other arguments as in" not in text(fn)
        assert "float32 for integer inputs" in text(fn), fn.__name__


def test_backward_refuses_integers_as_its_docstring_says():
    import numpy as np

    import fastnorm

    assert "integer inputs have no gradient" in " ".join(fastnorm.instance_norm_backward.__doc__.split())
    x = np.ones((1, 2, 4), np.uint8)
    with pytest.raises(TypeError, match=r"^x must have a floating dtype .*integer inputs have no gradient"):
        fastnorm.instance_norm_backward(x, x)
