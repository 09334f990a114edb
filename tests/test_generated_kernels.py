"""The CPU kernel variants are generated: tools/gen_kernels.py expands the
fastnorm/_cpu/*.c.src templates over its table of kinds and (input, output)
pairs into fastnorm/_cpu/fn_kernels_gen.c, which is committed (the build
compiles it and never runs the generator).  The committed file must be what
the generator writes, and every kernel the dispatch tables name must be
defined in it under its literal name, so that grep finds it."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "gen_kernels.py"
CPU = ROOT / "fastnorm" / "_cpu"
GENERATED = CPU / "fn_kernels_gen.c"


@pytest.fixture(scope="module")
def gen():
    if not (TOOL.exists() and (CPU / "fn_kernels.c.src").exists() and GENERATED.exists()):
        pytest.skip("needs the source tree: tools/gen_kernels.py, the templates and fn_kernels_gen.c")
    spec = importlib.util.spec_from_file_location("gen_kernels", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def text(gen):
    return GENERATED.read_text(encoding="utf-8")


def test_committed_file_is_what_the_generator_writes(gen, tmp_path):
    """The generator run into a fresh folder writes the committed file byte for
    byte (edit the templates or the table, then run the generator)."""
    r = subprocess.run(
        [sys.executable, str(TOOL), "-o", str(tmp_path)], capture_output=True, text=True, cwd=str(tmp_path)
    )
    assert r.returncode == 0, r.stderr
    fresh = (tmp_path / "fn_kernels_gen.c").read_bytes()
    assert fresh == GENERATED.read_bytes(), (
        "fastnorm/_cpu/fn_kernels_gen.c is not what tools/gen_kernels.py writes: run python tools/gen_kernels.py"
    )
    check = subprocess.run([sys.executable, str(TOOL), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_every_kernel_the_tables_name_is_defined_under_its_name(gen, text):
    names = gen.table_names()
    assert "apply_cl_u8_f32" in names and "stats_cl_f16" in names and "bgrad_cl_bf16" in names
    for name in names:
        defs = re.findall(rf"^static void {re.escape(name)}\(", text, re.M)
        assert len(defs) == 1, f"{name}: {len(defs)} definitions in fn_kernels_gen.c"


def test_the_dispatch_table_names_each_pair(gen, text):
    """fn_target's k[input code][output code] entry of every pair: the members
    in fn_dtype_kernels' order (stats, apply, planes, stats_cl, apply_cl,
    stats_apply), each pair once, in code order."""
    entries = re.findall(r"/\* \[(\d+)\]\[(\d+)\] (\w+) -> (\w+) \([^)]*\) \*/\n\s*\{([^}]*)\},", text)
    assert len(entries) == len(gen.TYPES) * len(gen.OUTPUTS)
    expect = [(i, o) for i in gen.TYPES for o in gen.OUTPUTS]
    for (ic, oc, i, o, members), (ei, eo) in zip(entries, expect):
        assert (i, o) == (ei, eo)
        assert (int(ic), int(oc)) == (gen.TYPES[i][0], gen.OUTPUTS.index(o))
        assert [m.strip() for m in members.split(",")] == list(gen.table_entry(i, o).values())


def test_table_codes_agree_with_fn_base(gen):
    """The generator's storage codes and output codes are fn_base.h's enum."""
    enum = {
        m.group(1).lower(): int(m.group(2)) for m in re.finditer(r"\bFN_(\w+) = (\d+)", (CPU / "fn_base.h").read_text())
    }
    assert {t: c for t, (c, _, _) in gen.TYPES.items()} == {t: enum[t] for t in gen.TYPES}
    assert [gen.TYPES[o][0] for o in gen.OUTPUTS] == list(range(len(gen.OUTPUTS)))
    nout = int(re.search(r"#define FN_NOUT (\d+)", (CPU / "fn_base.h").read_text()).group(1))
    assert len(gen.OUTPUTS) == nout and len(gen.TYPES) == max(enum.values()) + 1


def test_variants_are_not_instantiated_by_the_preprocessor(text):
    """The generated file is plain C: no template syntax left, no macro
    defined, no header included into it (the variants are spelled out)."""
    body = text.split("/* clang-format off */", 1)[1]
    assert "@" not in body and "/**" not in body
    assert not re.search(r"^\s*#\s*(define|include)\b", body, re.M)
    kernels = (CPU / "fn_kernels.c").read_text()
    assert re.findall(r'^#include "fn_kernels\w*\.[ch]"', kernels, re.M) == ['#include "fn_kernels_gen.c"']


def test_template_syntax(gen, tmp_path):
    """@NAME@, @NAME(args)@, an inline repeat list, if / else, include; an
    undefined placeholder is an error that names its line."""
    (tmp_path / "part.c.src").write_text("/** a note */\nint @N@_@K@ = @TWICE(@K@ + 1)@;\n")
    (tmp_path / gen.TEMPLATE).write_text(
        "/**begin repeat #N = a, b# #FLAG = 1, 0#*/\n"
        "/**begin repeat #K = 1, 2#*/\n"
        "/**include part.c.src*/\n"
        "/**end repeat**/\n"
        "/**end repeat**/\n"
    )
    g = gen.Generator(str(tmp_path))
    out = []
    g.expand(g.tree(gen.TEMPLATE), [{"TWICE": "2 * ({0})"}], out)
    assert out == [
        "int a_1 = 2 * (1 + 1);",
        "int a_2 = 2 * (2 + 1);",
        "int b_1 = 2 * (1 + 1);",
        "int b_2 = 2 * (2 + 1);",
    ]

    (tmp_path / gen.TEMPLATE).write_text("/**if WD*/\nwd\n/**else*/\nnot wd\n/**end if*/\nint a;\nint @GONE@;\n")
    g = gen.Generator(str(tmp_path))
    out = []
    g.expand(g.tree(gen.TEMPLATE)[:1], [{"WD": False}], out)
    assert out == ["not wd"]
    with pytest.raises(gen.TemplateError, match=r"fn_kernels\.c\.src:7: @GONE@ is not defined"):
        g.expand(g.tree(gen.TEMPLATE), [{"WD": True}], [])
