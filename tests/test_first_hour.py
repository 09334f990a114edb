"""What users hit in their first hour: the command line's --version and a
closed pipe, fastnorm.torch without torch, the FASTNORM_ISA warning's line,
the dynamo ONNX export without its table, fused activations in a printed
model, and jit.trace of a converted model."""

import os
import subprocess
import sys
import textwrap
import warnings

import pytest
from _optional import require

import fastnorm
from fastnorm.__main__ import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastnorm.__file__)))


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    env.update(extra)
    return env


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"fastnorm {fastnorm.__version__}"


def test_info_into_a_closed_pipe_ends_without_a_traceback():
    # `fastnorm info | head -0`: the reader is gone before anything is written
    p = subprocess.Popen(
        [sys.executable, "-m", "fastnorm", "info"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    p.stdout.close()
    err = p.stderr.read().decode()
    p.wait(timeout=120)
    p.stderr.close()
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert p.returncode == 1


def test_fastnorm_torch_without_torch_says_how_to_install_it():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # as if torch were not installed
        import fastnorm
        try:
            import fastnorm.torch
        except ModuleNotFoundError as e:
            print(e.name, "|", e)
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("torch | fastnorm.torch needs PyTorch"), r.stdout
    assert "pip install torch" in r.stdout


def test_bad_fastnorm_isa_warning_points_at_the_users_line(tmp_path):
    script = tmp_path / "user_script.py"
    script.write_text(
        "import numpy as np\nimport fastnorm\nfastnorm.instance_norm(np.ones((1, 2, 8, 8), np.float32))\n"
    )
    r = subprocess.run(
        [sys.executable, "-W", "always", str(script)],
        capture_output=True,
        text=True,
        env=_env(FASTNORM_ISA="no-such-level"),
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "FASTNORM_ISA='no-such-level'" in r.stderr
    assert f"{script}:3: RuntimeWarning" in r.stderr, r.stderr
    assert "<frozen" not in r.stderr


# ---------------------------------------------------------------- torch
def _model(torch, **kw):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.InstanceNorm2d(8, affine=True),
        nn.ReLU(),
        nn.GroupNorm(2, 8),
        nn.LeakyReLU(0.2),
        nn.InstanceNorm2d(8, track_running_stats=True),
    )


def test_fused_activations_show_in_the_printed_model():
    torch = require("torch", reason="torch is not installed")
    import fastnorm.torch as fnt

    model = fnt.convert(_model(torch), fuse_activations=True)
    text = repr(model)
    assert "Identity()" not in text
    assert "track_running_stats=False, activation='relu')" in text
    assert "(2): FusedActivation('relu', applied by the norm before it)" in text
    assert "GroupNorm(2, 8, eps=1e-05, affine=True, bias=True, activation='leaky_relu', negative_slope=0.2)" in text
    assert "(4): FusedActivation('leaky_relu'" in text
    assert "activation=" not in repr(model[5])  # nothing fused into the last norm
    # still scriptable, and the same function as the unfused model
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        ref = fnt.convert(_model(torch).eval())
        ref.load_state_dict(model.state_dict())
        torch.testing.assert_close(torch.jit.script(model.eval())(x), ref(x))


@pytest.mark.parametrize("training", [False, True])
def test_jit_trace_of_a_converted_model_gives_no_tracer_warnings(training):
    torch = require("torch", reason="torch is not installed")
    import fastnorm.torch as fnt

    torch.manual_seed(0)
    model = fnt.convert(_model(torch), fuse_activations=True).train(training)
    twin = fnt.convert(_model(torch), fuse_activations=True).train(training)
    twin.load_state_dict(model.state_dict())
    x0 = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        twin(x0)  # tracing runs the model once: the same running-statistics update
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = torch.jit.trace(model, x0, check_trace=False)
    tracer = [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    assert not tracer, [f"{w.filename}:{w.lineno}: {w.message}" for w in tracer]
    # the trace is right for another size too, running statistics included
    x = torch.randn(2, 3, 24, 20)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), twin(x))
    torch.testing.assert_close(traced.state_dict()["5.running_var"], twin.state_dict()["5.running_var"])


def test_dynamo_onnx_export_without_the_table_names_it(tmp_path):
    torch = require("torch", reason="torch is not installed")
    require("onnxscript", reason="onnxscript is not installed (the dynamo ONNX exporter needs it)")
    import fastnorm.torch as fnt

    model = fnt.convert(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.InstanceNorm2d(4))).eval()
    with pytest.raises(Exception) as e:
        torch.onnx.export(model, (torch.randn(1, 3, 8, 8),), str(tmp_path / "m.onnx"), dynamo=True)
    shown = str(e.value) + "\n".join(getattr(e.value, "__notes__", []))
    assert "custom_translation_table=fastnorm.torch.onnx_translation_table()" in shown
    assert type(e.value).__name__ == "ConversionError"  # torch's own error, with the hint added
