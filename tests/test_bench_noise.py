"""The bench under load: unstable copies, busy neighbours and ratios above the
copy's ceiling are said plainly under the table, with a quiet rerun
suggested.  Timings and load are injected into the rows; nothing here runs
under real load or asserts a timing."""

import math

import pytest

from fastnorm.bench import harness as B
from fastnorm.bench import peers as P


def _row(shape="S1", layout="cf", times=None, limit=1.0, spread=None, others_busy=0.0, contention=0):
    dims = (1, 64, 256, 256)
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
        "times": dict(times or {"copy": 1.0, "fastnorm": 2.0, "fastnorm_out": 1.5, "torch_in": 6.0}),
        "spread": dict(spread or {"copy": 1.05, "fastnorm": 1.05}),
        "others_busy": others_busy,
        "contention": contention,
    }


def test_quiet_rows_give_no_warning():
    rows = [_row("S1"), _row("S2", layout="cl")]
    text = B.table(rows)
    assert "warning" not in text and " !" not in text
    assert "under load" not in "\n".join(B.footer(B.summary(rows)))


def test_ratio_above_the_ceiling_is_never_printed_without_the_warning():
    # the copy was slowed by the neighbours: fastnorm "8.50x a copy", 240x torch
    row = _row(times={"copy": 8.5, "fastnorm": 1.0, "fastnorm_out": 1.0, "torch_in": 240.7})
    text = B.table([row])
    assert "| 8.50 ! | 8.50 ! |" in text  # the ratios are still shown, marked...
    assert "warning: 1 of 1 cases (ratios marked !)" in text  # ...and explained
    assert "of limit 8.50 is above the copy's ceiling" in text
    assert "Rerun on a quiet machine" in text
    foot = "\n".join(B.footer(B.summary([row])))
    assert "240.7x faster than" in foot and "measured under load" in foot and "rerun on a quiet machine" in foot


def test_unstable_copy_is_reported():
    row = _row(spread={"copy": 4.0, "fastnorm": 1.1})
    text = B.table([row])
    assert "the copy's samples varied 4.0x" in text and "Rerun on a quiet machine" in text


def test_busy_neighbours_are_reported_but_not_the_bench_own_contention():
    busy = _row(others_busy=1.6)
    assert "other processes kept 1.6 cores busy" in B.table([busy])
    # --contention's own busy processes are the point of that run
    own = _row(others_busy=2.1, contention=2)
    assert "warning" not in B.table([own])
    assert "other processes kept 3.5 cores busy" in B.table([_row(others_busy=3.5, contention=2)])


@pytest.mark.parametrize(
    "row,expected",
    [
        (_row(), []),
        (_row(spread={"copy": 1.49}), []),
        (_row(others_busy=0.5), []),
        (_row(times={"copy": 1.1, "fastnorm": 1.0}), []),  # of limit 1.10: rounding allowed
        (_row(times={"copy": 1.2, "fastnorm": 1.0}), ["of limit 1.20 is above the copy's ceiling"]),
        (_row(times={"copy": 0.8, "fastnorm": 1.0}, limit=2 / 3), ["of limit 1.20 is above the copy's ceiling"]),
    ],
)
def test_noise_thresholds(row, expected):
    assert B.noise(row) == expected


def test_spread_and_others_busy_measurement(tmp_path):
    assert B.spread([1.0, 2.0, 1.5]) == 2.0
    assert B.spread([3.0]) == 1.0 and B.spread([]) == 1.0
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 1000 0 0 0 0 0 0\ncpu0 1 0 1 1 0 0 0 0 0 0\n")
    with B.OthersBusy(str(stat)) as load:
        pass
    # nothing changed in the (fake) /proc/stat: nobody else was busy
    assert load.cores == 0.0
    with B.OthersBusy(str(tmp_path / "missing")) as load:
        pass
    assert load.cores is None


def test_run_suite_records_spread_and_load():
    rows = B.run_suite(
        {"T": (1, 4, 8, 8)},
        layouts=("cf",),
        threads=1,
        repeat=2,
        peers=P.peers_available(["none"]),
        progress=False,
        min_time=0.0,
        contention=3,
    )
    r = rows[0]
    assert set(r["spread"]) >= {"copy", "copy_nt", "copy_memcpy", "fastnorm"}
    assert all(v >= 1.0 for v in r["spread"].values())
    assert r["contention"] == 3
    assert r["others_busy"] is None or r["others_busy"] >= 0.0
