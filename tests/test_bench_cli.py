"""The bench command line (python -m fastnorm bench): its options, checks and
output, from tiny runs and synthetic rows.  Nothing here asserts a timing."""

import math

import pytest
from _optional import require

from fastnorm.__main__ import main
from fastnorm.bench import harness as B
from fastnorm.bench import peers as P

TINY_RUN = ["bench", "--shapes", "2x8x32x32", "--repeat", "1", "--quiet", "--peers", "numpy"]


def _row(shape="S1", dims=(1, 64, 256, 256), layout="cf", times=None, limit=1.0):
    return {
        "shape": shape,
        "dims": list(dims),
        "layout": layout,
        "dtype": "float32",
        "threads": 2,
        "bytes": 2 * 4 * math.prod(dims),
        "op": "instance_norm",
        "unit_bytes": 4 * math.prod(dims[2:]),
        "limit_fraction": limit,
        "times": dict(times or {"copy": 1.0, "fastnorm": 2.0, "fastnorm_out": 1.5}),
    }


# ------------------------------------------------------------ table words
@pytest.mark.parametrize(
    "ndim,layout,words",
    [
        (3, "cf", "NCL"),
        (3, "cl", "NLC"),
        (4, "cf", "NCHW"),
        (4, "cl", "NHWC"),
        (5, "cf", "NCDHW"),
        (5, "cl", "NDHWC"),
        (6, "cf", "channels first"),
        (6, "cl", "channels last"),
    ],
)
def test_layout_words(ndim, layout, words):
    assert B.layout_words(ndim, layout) == words


def test_case_label_names_shape_and_layout():
    assert B.case_label("S1", (1, 64, 256, 256), "cf") == "S1 (1, 64, 256, 256) NCHW"
    # channels last: the channels-last array's own shape
    assert B.case_label("S1", (1, 64, 256, 256), "cl") == "S1 (1, 256, 256, 64) NHWC"
    assert B.case_label("S5", (2, 16, 64, 64, 64), "cl") == "S5 (2, 64, 64, 64, 16) NDHWC"
    # a shape given as NxCxHxW is not named twice
    assert B.case_label("2x8x32", (2, 8, 32), "cf") == "(2, 8, 32) NCL"


def test_table_columns_and_ratios_use_the_allocating_call():
    row = _row(times={"copy": 1.0, "fastnorm": 2.0, "fastnorm_out": 1.5, "numpy": 8.0}, limit=2 / 3)
    text = B.table([row])
    head = text.splitlines()[0]
    for col in ("shape and layout", "fastnorm ms", "out= ms", "of copy", "of limit", "x numpy"):
        assert f" {col} |" in head, col
    assert "x fastnorm_out" not in head
    line = text.splitlines()[2]
    assert "S1 (1, 64, 256, 256) NCHW" in line
    # fastnorm 2 ms, out= 1.5 ms; of copy 1/2; of limit (1/2) / (2/3); numpy 8/2
    assert "| 2000.000 | 1500.000 |" in line
    assert "| 0.50 | 0.75 |" in line and "| 4.0 (" in line


# ------------------------------------------------------ L2 and the limit
@pytest.mark.parametrize(
    "text,size",
    [
        ("1024K", 1 << 20),
        ("2048K\n", 2 << 20),
        ("2M", 2 << 20),
        ("512 KiB", 512 << 10),
        ("65536", 65536),
        ("1 GB", 1 << 30),
        ("", None),
        ("big", None),
    ],
)
def test_parse_size(text, size):
    assert B.parse_size(text) == size


def _cache_index(root, i, level, kind, size):
    d = root / f"index{i}"
    d.mkdir()
    (d / "level").write_text(f"{level}\n")
    (d / "type").write_text(f"{kind}\n")
    (d / "size").write_text(f"{size}\n")


def test_l2_from_sysfs(tmp_path):
    _cache_index(tmp_path, 0, 1, "Data", "48K")
    _cache_index(tmp_path, 1, 1, "Instruction", "32K")
    _cache_index(tmp_path, 2, 2, "Unified", "2048K")
    _cache_index(tmp_path, 3, 3, "Unified", "32768K")
    size, src = B.l2_cache_bytes(str(tmp_path))
    assert size == 2 << 20 and src.endswith("index2")


def test_l2_falls_back_to_one_mib(tmp_path):
    assert B.l2_cache_bytes(str(tmp_path / "missing")) == (1 << 20, "assumed")
    _cache_index(tmp_path, 0, 1, "Data", "48K")
    assert B.l2_cache_bytes(str(tmp_path)) == (B.DEFAULT_L2, "assumed")


def test_unit_bytes():
    # channels first: one plane; group_norm: a group's C/G planes
    assert B.unit_bytes((1, 64, 256, 256), "cf", 4) == 256 * 256 * 4
    assert B.unit_bytes((8, 128, 64, 64), "cf", 2, op="group_norm", groups=32) == 4 * 64 * 64 * 2
    # channels last: one instance, whatever the op
    assert B.unit_bytes((1, 64, 256, 256), "cl", 4) == 64 * 256 * 256 * 4
    assert B.unit_bytes((2, 16, 8, 8, 8), "cl", 8, op="group_norm", groups=4) == 16 * 512 * 8


def test_limit_fraction():
    l2 = 1 << 20
    assert B.limit_fraction(l2, l2) == 1.0  # fits: the copy itself
    assert B.limit_fraction(1024, l2) == 1.0
    assert B.limit_fraction(l2 + 1, l2) == pytest.approx(2 / 3)  # two reads, one write
    assert B.of_limit(_row(limit=2 / 3)) == pytest.approx(0.75)
    assert B.of_limit(_row(times={"copy": 1.0})) is None


def test_cpu_model(tmp_path):
    p = tmp_path / "cpuinfo"
    p.write_text("processor\t: 0\nvendor_id\t: X\nmodel name\t: Test CPU 9000\n")
    assert B.cpu_model(str(p)) == "Test CPU 9000"
    assert B.cpu_model(str(tmp_path / "missing"))  # platform's answer, never empty


def test_simd_info_falls_back(monkeypatch):
    import fastnorm

    def old_show_config(file=None):
        print("would print")

    monkeypatch.setattr(fastnorm, "show_config", old_show_config)
    assert B._simd_info() == ("unknown", [])
    monkeypatch.setattr(
        fastnorm, "show_config", lambda mode=None: {"simd_level": "x86-64-v3", "simd_levels": ["x86-64", "x86-64-v3"]}
    )
    assert B._simd_info() == ("x86-64-v3", ["x86-64", "x86-64-v3"])


# ------------------------------------------------------------- end to end
def test_tiny_run_header_and_columns(capsys):
    assert main(TINY_RUN) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("fastnorm bench:") and "thread" in lines[0]
    assert lines[1].startswith("CPU: ") and "SIMD level: " in lines[1] and "KiB per core" in lines[1]
    head = next(ln for ln in lines if ln.startswith("| shape and layout"))
    for col in ("fastnorm ms", "out= ms", "GB/s", "copy GB/s", "of copy", "of limit", "x numpy"):
        assert f" {col} |" in head, col
    assert "| (2, 8, 32, 32) NCHW |" in out and "| (2, 32, 32, 8) NHWC |" in out


# ------------------------------------------------------------------ footer
def test_footer_sentences_from_synthetic_rows():
    rows = [
        _row("A", layout="cf", times={"copy": 1.0, "fastnorm": 2.0, "torch_in": 8.0, "torch_gn": 1.0}),
        _row("B", layout="cf", times={"copy": 1.0, "fastnorm": 1.25, "torch_in": 5.0, "torch_gn": 3.0}, limit=2 / 3),
        _row("C", layout="cf", times={"copy": 1.0, "fastnorm": 1.0, "torch_in": 2.0, "torch_gn": 1.5}),
        _row("D", layout="cl", times={"copy": 1.0, "fastnorm": 4.0, "numpy": 2.0}),
    ]
    summ = B.summary(rows)
    cf = summ["cf"]
    assert cf["median_x_torch_in"] == 4.0 and cf["min_x_torch_in"] == 2.0 and cf["max_x_torch_in"] == 4.0
    assert cf["min_copy_fraction"] == 0.5 and cf["max_copy_fraction"] == 1.0
    assert cf["max_of_limit"] == pytest.approx(1.2)
    text = "\n".join(B.footer(summ))
    assert "Channels first:" in text and "Channels last:" in text
    assert (
        "fastnorm is 4.0x faster than torch.nn.functional.instance_norm "
        "(median of 3 cases, x torch_in from 2.0x to 4.0x)."
    ) in text
    assert (
        "fastnorm is 1.5x faster than torch.nn.functional.group_norm "
        "(median of 3 cases, x torch_gn from 0.50x to 2.4x)."
    ) in text
    assert "fastnorm is 2.0x slower than plain NumPy (1 case)." in text
    assert (
        "fastnorm reaches 0.50-1.00 (median 0.80) of a parallel copy and 0.50-1.20 (median 1.00) of its limit."
    ) in text
    assert "onnxruntime" not in text  # a peer with no numbers gets no sentence


# ------------------------------------------------------------------- peers
def _uninstall(monkeypatch, *names):
    for p in P.PEERS:
        if p.name in names:
            monkeypatch.setattr(p, "available", lambda: False)


@pytest.mark.parametrize("bad", ["torch", "numpy,tensorflow", "copy", "fastnorm"])
def test_unknown_peer_is_an_error(bad, capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "--shapes", "2x8x32x32", "--repeat", "1", "--quiet", "--peers", bad])
    msg = str(e.value)
    assert msg.startswith("--peers: unknown peer") and repr(bad.split(",")[-1]) in msg
    assert "numpy, torch_in, torch_gn, torch_compile, onnxruntime" in msg
    assert capsys.readouterr().out == ""  # rejected before anything ran


def test_numpy_only_says_how_to_add_the_others(monkeypatch, capsys):
    _uninstall(monkeypatch, "torch_in", "torch_gn", "torch_compile", "onnxruntime")
    monkeypatch.setattr(P, "_have", lambda m: m == "onnx")
    monkeypatch.setattr(B, "run_suite", lambda *a, **k: [])
    main(["bench", "--shapes", "2x8x32x32", "--repeat", "1", "--quiet"])
    out = capsys.readouterr().out
    assert "peers: numpy\n" in out
    assert (
        "not installed: torch_in, torch_gn, torch_compile, onnxruntime; install torch and onnxruntime "
        '(pip install ".[bench]" torch) to compare against them'
    ) in out


def test_named_peer_not_installed(monkeypatch, capsys):
    _uninstall(monkeypatch, "torch_in", "torch_gn", "torch_compile")
    monkeypatch.setattr(P, "_have", lambda m: m != "torch")
    monkeypatch.setattr(B, "run_suite", lambda *a, **k: [])
    main(["bench", "--shapes", "2x8x32x32", "--repeat", "1", "--quiet", "--peers", "numpy,torch_in"])
    out = capsys.readouterr().out
    assert "peers: numpy\n" in out
    assert "torch_in is not installed; install torch (pip install torch) to compare against it" in out
    assert "torch_gn" not in out  # not asked for, not mentioned


def test_install_hint():
    none = lambda m: False  # noqa: E731
    assert P.install_hint([], have=none) == ""
    assert P.install_hint(["onnxruntime"], have=none) == 'install onnxruntime and onnx (pip install ".[bench]")'
    assert P.install_hint(["onnxruntime"], have=lambda m: m != "onnx") == 'install onnx (pip install ".[bench]")'
    assert P.install_hint(["torch_gn", "torch_in"], have=none) == "install torch (pip install torch)"
    assert (
        P.install_hint(["torch_in", "torch_gn", "onnxruntime"], have=lambda m: m == "onnx")
        == 'install torch and onnxruntime (pip install ".[bench]" torch)'
    )


# ---------------------------------------------------------- plot, progress
def test_plot_without_matplotlib_fails_before_running(monkeypatch, tmp_path, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    ran = []
    monkeypatch.setattr(B, "run_suite", lambda *a, **k: ran.append(1) or [])
    with pytest.raises(SystemExit) as e:
        main(TINY_RUN + ["--plot", str(tmp_path / "b.png")])
    assert "--plot" in str(e.value) and "matplotlib" in str(e.value)
    assert ran == [] and capsys.readouterr().out == ""


def test_plot_with_matplotlib(tmp_path, capsys):
    require("matplotlib")
    png = tmp_path / "b.png"
    assert main(TINY_RUN + ["--plot", str(png)]) == 0
    assert png.stat().st_size > 0 and f"wrote {png}" in capsys.readouterr().out


class _Stderr:
    def __init__(self, tty):
        self.tty, self.text = tty, []

    def isatty(self):
        return self.tty

    def write(self, s):
        self.text.append(s)

    def flush(self):
        pass


@pytest.mark.parametrize("tty", [False, True])
def test_progress_bar_only_on_a_terminal(monkeypatch, tty):
    err = _Stderr(tty)
    monkeypatch.setattr("sys.stderr", err)
    B.run_suite(
        {"T": (1, 4, 8, 8)},
        layouts=("cf",),
        threads=1,
        repeat=2,
        peers=P.peers_available(["none"]),
        progress=True,
        min_time=0.0,
    )
    drawn = "".join(err.text)
    if tty:
        assert "[" in drawn and "2/2" in drawn and drawn.endswith("\n")
    else:
        assert drawn == ""


def test_cli_draws_no_bar_when_stderr_is_not_a_terminal(capsys):
    main(["bench", "--shapes", "2x8x32x32", "--repeat", "1", "--peers", "numpy"])  # no --quiet
    assert capsys.readouterr().err == ""


def test_footer_one_case_gives_one_fraction():
    text = "\n".join(B.footer(B.summary([_row(times={"copy": 1.0, "fastnorm": 2.0})])))
    assert "fastnorm reaches 0.50 of a parallel copy and 0.50 of its limit." in text


# -------------------------------------------------------------- contention
def _children():
    """PIDs whose parent is this process (from /proc)."""
    import glob
    import os

    me, out = os.getpid(), set()
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended while we looked
        if int(fields[1]) == me and fields[0] != "Z":
            out.add(int(stat.split("/")[2]))
    return out


needs_proc = pytest.mark.skipif(not __import__("os").path.exists("/proc/self/stat"), reason="needs /proc")


@needs_proc
def test_contention_starts_one_busy_process_per_core_and_stops_them(monkeypatch, capsys):
    import os

    before = _children()
    seen = []
    real = B.run_suite

    def run_suite(*a, **k):
        seen.append(_children() - before)
        return real(*a, **k)

    monkeypatch.setattr(B, "run_suite", run_suite)
    assert main(TINY_RUN + ["--contention"]) == 0
    n = os.cpu_count()
    assert len(seen) == 1 and len(seen[0]) == n
    assert _children() - before == set()  # all stopped and reaped
    out = capsys.readouterr().out
    assert f"under contention: {n} busy process" in out and "busy processes ended before" not in out


@needs_proc
def test_busy_processes_stopped_when_the_run_fails():
    before = _children()
    with pytest.raises(RuntimeError):
        with B.busy_processes(2) as procs:
            assert len(_children() - before) == 2 and all(p.poll() is None for p in procs)
            raise RuntimeError("the run broke")
    assert all(p.returncode is not None for p in procs)
    assert _children() - before == set()


def test_busy_process_ends_by_itself():
    with B.busy_processes(1, seconds=0.2) as procs:
        procs[0].wait(timeout=30)  # its own deadline, not the terminate
        assert procs[0].returncode == 0


@needs_proc
def test_busy_process_ends_when_its_parent_dies():
    import os
    import subprocess
    import sys
    import time

    code = (
        "import os\nfrom fastnorm.bench import harness as B\n"
        "procs = B.busy_processes(1, seconds=120).__enter__()\n"
        "print(procs[0].pid, flush=True)\nos._exit(0)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(B.__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    pid = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout)

    def alive():
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    t0 = time.monotonic()
    while alive() and time.monotonic() - t0 < 30:
        time.sleep(0.05)
    assert not alive()


# --------------------------------------------------------------------- isa
LEVELS = ("x86-64-v4", ["x86-64", "x86-64-v3", "x86-64-v4"])


@pytest.mark.parametrize(
    "spec,words",
    [
        (
            "x86-64-v5",
            "--isa: unknown level 'x86-64-v5'; valid levels on this machine: auto, x86-64, x86-64-v3, x86-64-v4",
        ),
        ("x86-64,avx9", "--isa: unknown level 'avx9'"),
        ("x86-64,x86-64", "--isa: 'x86-64' is given twice"),
        (",", "--isa: no level in ','"),
    ],
)
def test_isa_unknown_level_is_an_error(monkeypatch, capsys, spec, words):
    monkeypatch.setattr(B, "_simd_info", lambda: LEVELS)
    monkeypatch.setattr("subprocess.Popen", None)  # nothing may start
    with pytest.raises(SystemExit) as e:
        main(TINY_RUN + ["--isa", spec])
    assert str(e.value).startswith(words)
    assert capsys.readouterr().out == ""


def test_isa_needs_the_level_list(monkeypatch):
    monkeypatch.setattr(B, "_simd_info", lambda: ("unknown", []))
    with pytest.raises(SystemExit) as e:
        main(TINY_RUN + ["--isa", "x86-64-v3"])
    assert "--isa: cannot run 'x86-64-v3'" in str(e.value) and "only auto" in str(e.value)


def test_isa_and_contention_are_cpu_only():
    for extra in (["--isa", "auto"], ["--contention"]):
        with pytest.raises(SystemExit) as e:
            main(TINY_RUN + ["--device", "gpu"] + extra)
        assert str(e.value).startswith(f"{extra[0]}: applies to the CPU bench only")


def test_child_argv_repeats_every_option_but_isa():
    from fastnorm.__main__ import _child_argv, _parser

    argv = [
        "bench",
        "--shapes",
        "S1,2x8x32x32",
        "--repeat",
        "3",
        "--quiet",
        "--peers",
        "numpy",
        "--threads",
        "1",
        "--dtype",
        "float64",
        "--layout",
        "cl",
        "--op",
        "group_norm",
        "--groups",
        "4",
        "--activation",
        "silu",
        "--contention",
        "--isa",
        "x86-64",
        "--json",
        "a.json",
        "--plot",
        "a.png",
    ]
    args = _parser().parse_args(argv)
    child = _child_argv(args, "c.json", "c-x86-64.png")
    assert "--isa" not in child
    again = vars(_parser().parse_args(child))
    want = dict(vars(args), isa=None, json="c.json", plot="c-x86-64.png")
    assert again == want
    assert _child_argv(_parser().parse_args(TINY_RUN), None, None)[:1] == ["bench"]


def _isa_run(tmp_path, levels, capsys):
    out_json = tmp_path / "isa.json"
    assert main(TINY_RUN + ["--layout", "cf", "--isa", ",".join(levels), "--json", str(out_json)]) == 0
    import json

    data = json.loads(out_json.read_text())
    return capsys.readouterr().out, data


def test_isa_auto_runs_in_a_child(tmp_path, capsys):
    """auto is valid on every build: one child with FASTNORM_ISA=auto, its
    output printed, its JSON under the key "auto"."""
    out, data = _isa_run(tmp_path, ["auto"], capsys)
    assert "=== FASTNORM_ISA=auto ===" in out and "FASTNORM_ISA=auto" in out.split("===")[2]
    assert "| (2, 8, 32, 32) NCHW |" in out
    assert list(data) == ["auto"] and data["auto"]["machine"]["isa_env"] == "auto"
    assert data["auto"]["rows"][0]["layout"] == "cf"  # the options reached the child


def test_isa_each_level(tmp_path, capsys):
    active, levels = B._simd_info()
    if not levels:
        pytest.skip("this build does not list its SIMD levels (no show_config(mode='dicts'))")
    out, data = _isa_run(tmp_path, levels, capsys)
    assert list(data) == levels
    for lev in levels:
        assert f"=== FASTNORM_ISA={lev} ===" in out
        assert data[lev]["machine"]["simd_level"] == lev


# ------------------------------------------------------ the other options
@pytest.mark.parametrize(
    "opt,val,words",
    [
        ("--dtype", "float8", "--dtype: 'float8' is not one of"),
        ("--layout", "nchw", "--layout: 'nchw' is not cf or cl"),
        ("--shapes", "2x8xQ", "--shapes: cannot read '2x8xQ'"),
        ("--shapes", "8x32", "--shapes: '8x32' needs at least 3 dimensions"),
        ("--threads", "0", "--threads: must be >= 1, got 0"),
        ("--repeat", "0", "--repeat: must be >= 1, got 0"),
    ],
)
def test_bad_option_values_name_option_and_value(opt, val, words, capsys):
    argv = ["bench", "--shapes", "2x8x32x32", "--repeat", "1", "--quiet", "--peers", "numpy"]
    i = argv.index(opt) if opt in argv else len(argv)
    argv[i : i + 2] = [opt, val]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert str(e.value).startswith(words)
    assert capsys.readouterr().out == ""


def test_backward_units_limit_and_bytes():
    # a backward unit holds x and grad_out; past L2 x and grad_out are read twice: 3/5
    assert B.unit_bytes((1, 64, 256, 256), "cf", 4, op="instance_norm_backward") == 2 * 256 * 256 * 4
    assert B.unit_bytes((8, 128, 64, 64), "cf", 4, op="group_norm_backward", groups=32) == 2 * 4 * 64 * 64 * 4
    assert B.limit_fraction(1 << 20, 1 << 20, "instance_norm_backward") == 1.0
    assert B.limit_fraction((1 << 20) + 1, 1 << 20, "group_norm_backward") == pytest.approx(3 / 5)
    assert B.arrays_moved("instance_norm_backward") == 3 and B.arrays_moved("instance_norm") == 2


@pytest.mark.parametrize("op", ["instance_norm_backward", "group_norm_backward"])
def test_bench_backward_runs(op):
    rows = B.run_suite(
        {"t": (2, 8, 16, 16)}, layouts=("cf", "cl"), threads=1, repeat=1, op=op, groups=4, progress=False, min_time=0.0
    )
    for r in rows:
        assert r["bytes"] == 3 * 4 * 2 * 8 * 16 * 16
        assert r["times"]["fastnorm"] and r["times"]["copy"]
        assert "fastnorm_out" not in r["times"] and "numpy" not in r["times"]
    assert "grad_out" in B.table(rows)


def test_bench_backward_refuses_activation(capsys):
    with pytest.raises(SystemExit, match="activation"):
        main(["bench", "--op", "instance_norm_backward", "--activation", "relu", "--quiet"])


# ------------------------------------------------- arguments refused up front
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--threads", "100000"], "--threads: fastnorm uses at most"),
        (["--op", "group_norm", "--groups", "0"], "--groups: must be >= 1, got 0"),
        (["--op", "group_norm", "--groups", "-1"], "--groups: must be >= 1, got -1"),
        (["--op", "group_norm", "--groups", "3"], "--groups: 3 does not divide the 8 channels of 2x8x32x32"),
        (["--json", "/nonexistent-fastnorm/x.json"], "--json: the folder '/nonexistent-fastnorm' does not exist"),
        (["--plot", "/nonexistent-fastnorm/x.png"], "--plot: the folder '/nonexistent-fastnorm' does not exist"),
        (["--shapes=-2x8x4x4"], "--shapes: '-2x8x4x4' has a dimension below 1"),
        (["--shapes", "1x2x99999999999999999999x4"], "more than a bench can hold"),
        (["--shapes", ","], "--shapes: no shape in ','"),
        (["--dtype", ","], "--dtype: no dtype in ','"),
        (["--layout", ","], "--layout: no layout in ','"),
    ],
)
def test_bad_arguments_stop_before_the_run(extra, message, capsys):
    # later options win: each case overrides TINY_RUN's own --shapes
    with pytest.raises(SystemExit) as e:
        main(TINY_RUN + extra)
    assert message in str(e.value)
    assert capsys.readouterr().out == ""  # nothing ran


def test_images_suite_checks_its_json_path_first(capsys):
    with pytest.raises(SystemExit, match="--json: the folder"):
        main(["bench", "--suite", "images", "--json", "/nonexistent-fastnorm/y.json", "--quiet"])
    assert capsys.readouterr().out == ""


def test_parallel_copy_refuses_what_would_crash():
    import numpy as np

    from fastnorm._cpu import _engine as E

    a = np.arange(16, dtype=np.float32)
    with pytest.raises(ValueError, match=r"n_threads must be in \[1, 1024\], got 100000"):
        E.parallel_copy(a, np.empty_like(a), 100000, 0)
    with pytest.raises(ValueError, match="n_threads"):
        E.parallel_copy(a, np.empty_like(a), 0, 0)
    with pytest.raises(ValueError, match="dst holds 16 bytes, fewer than src's 64"):
        E.parallel_copy(a, np.empty(4, np.float32), 2, 0)
    with pytest.raises(ValueError, match="C-contiguous"):
        E.parallel_copy(a, np.empty(32, np.float32)[::2], 2, 0)
    assert np.array_equal(E.parallel_copy(a, np.empty_like(a), 2), a)
