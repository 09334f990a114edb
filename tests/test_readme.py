"""Every ```python block of README.md runs as written: each as a script in a
subprocess, in a temporary folder holding small stand-ins for the files it
reads (photo.jpg, cells.tif, scan.nii.gz, huge.npy, huge.zarr).  A block
whose imports (or file readers) are not installed is skipped, naming them."""

import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import fastnorm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")

with open(README, encoding="utf-8") as _f:
    _TEXT = _f.read()
BLOCKS = [
    (_TEXT.count("\n", 0, m.start()) + 2, m.group(1))
    for m in re.finditer(r"^```python\n(.*?)^```", _TEXT, flags=re.S | re.M)
]


#: pip's names for the modules whose distribution is named otherwise
PIP_NAMES = {"PIL": "pillow"}


def _needs(code):
    """The top-level modules a block imports, and those its calls need."""
    mods = set()
    for line in code.splitlines():
        m = re.match(r"\s*import (.+)", line)
        if m:
            mods.update(part.split(" as ")[0].strip().split(".")[0] for part in m.group(1).split(","))
        m = re.match(r"\s*from (\S+) import", line)
        if m:
            mods.add(m.group(1).split(".")[0])
    if "dynamo=True" in code:
        mods.add("onnxscript")  # the dynamo ONNX exporter
    if "dynamo=False" in code:
        mods.add("onnx")  # the TorchScript one
    if "zarr" in code:
        mods.add("zarr")
    return sorted(mods)


def _slow(code):
    """Blocks that start a Dask cluster or export to ONNX take seconds each."""
    return "Client(" in code or "onnx.export" in code


PARAMS = [
    pytest.param(code, id=f"line{line}", marks=[pytest.mark.slow] if _slow(code) else []) for line, code in BLOCKS
]


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 6, f"found {len(BLOCKS)} python blocks in README.md"


def _stand_ins(code, folder):
    """Small files with the names and kinds the block reads."""
    rng = np.random.default_rng(0)
    if "photo.jpg" in code:
        from PIL import Image

        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(os.path.join(folder, "photo.jpg"))
    if "cells.tif" in code:
        import tifffile

        stack = rng.integers(0, 4096, (4, 64, 64), dtype=np.uint16)
        tifffile.imwrite(os.path.join(folder, "cells.tif"), stack, photometric="minisblack")
    if "scan.nii.gz" in code:
        import nibabel

        vol = rng.normal(40.0, 300.0, (8, 16, 16)).astype(np.float32)
        nibabel.Nifti1Image(vol, np.eye(4)).to_filename(os.path.join(folder, "scan.nii.gz"))
    # (1, C, H, W): H spans three 4096-row tiles / chunks, as the examples cut them
    huge = rng.standard_normal((1, 3, 9000, 16)).astype(np.float32)
    if "huge.npy" in code:
        np.save(os.path.join(folder, "huge.npy"), huge)
    if '"huge.zarr"' in code:
        import zarr

        z = zarr.open_array(
            os.path.join(folder, "huge.zarr"), mode="w", shape=huge.shape, chunks=(1, 3, 4096, 16), dtype=huge.dtype
        )
        z[...] = huge


@pytest.mark.parametrize("code", PARAMS)
def test_readme_block_runs(code, tmp_path):
    missing = [m for m in _needs(code) if importlib.util.find_spec(m) is None]
    if missing:
        pip = " ".join(PIP_NAMES.get(m, m) for m in missing)
        pytest.skip(f"the block needs {', '.join(missing)}, not installed (pip install {pip})")
    _stand_ins(code, str(tmp_path))
    script = tmp_path / "readme_block.py"
    script.write_text(code)
    # the fastnorm under test: a checkout's, or an installed sdist's or wheel's
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(fastnorm.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [pkg_root, os.environ.get("PYTHONPATH")])))
    r = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600
    )
    assert r.returncode == 0, f"README block failed:\n{code}\n--- stderr ---\n{r.stderr[-4000:]}"
