"""The benchmark entry points run end to end for a few iterations (no timing is asserted).

The emulated aarch64 lane (qemu + an arm64 CPython + RKNNLite) needs a download of ~100 MB
the first time, so outside CI this suite only uses it when a previous `make bench` (or
`python bench/aarch64_lane.py`) left it cached in .cache/aarch64/; set RKRT_BENCH_BUILD_LANE=1
to let the test build it. Under CI=true it always builds (or reuses) the lane and runs: the
only side-by-side run with the vendor's RKNNLite must not skip there. Nor may the comparison
with ez_rknn_async, which `make test` installs into .cache/ez_rknn_async (a 6 MB wheel).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import aarch64_lane
import pytest
import run_all
from report import LINE_LABELS, overhead_ratio, target_checks
from rkrt_support import IN_CI

FLOOR_SEQUENCE = {"rknn_inputs_set", "rknn_run", "rknn_outputs_get", "rknn_outputs_release"}


def _assert_lane_result(result: dict, lines: set[str]) -> None:
    assert len(result["models"]) == 2
    for model in result["models"]:
        assert set(model["lines"]) == lines
        for kind, line in model["lines"].items():
            settings = result["settings"]
            assert len(line["samples_us"]) == settings["blocks"] * settings["block_calls"]
            assert 0 < line["median_us"] <= line["p99_us"]
            calls = line["c_calls_by_function"]
            # One inference is one rknn_run on every line, whatever else each binding does.
            assert calls["rknn_run"] == 1.0, (kind, calls)
            if kind == "floor":
                assert calls == dict.fromkeys(FLOOR_SEQUENCE, 1.0)
            if kind in ("run", "bind"):
                # rkrt queries tensor attributes once at open, never per call.
                assert "rknn_query" not in calls, (kind, calls)
        assert {"run/floor", "bind/floor"} <= set(model["ratios"])
    # Every runtime-allocated output was released and nothing else is left alive.
    assert result["live_after"] == {"contexts": 0, "mems": 0, "outputs": 0}


def test_native_lane_writes_table_json_and_chart(tmp_path: Path, capsys) -> None:
    argv = ["--quick", "--native-only", "--no-peer", "--results", str(tmp_path)]
    assert run_all.main(argv) == 0
    printed = capsys.readouterr().out
    for label in ("raw cffi floor", "rkrt Session.run", "rkrt zero-copy (bind)"):
        assert label in printed
    summary = json.loads((tmp_path / "bench.json").read_text())
    ((lane, result),) = summary["lanes"].items()
    assert lane.endswith("native")
    _assert_lane_result(result, {"floor", "run", "bind"})
    assert (tmp_path / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "rkrt Pool.imap" in printed and "run_batch" in printed
    streaming = json.loads((tmp_path / "streaming.json").read_text())
    assert streaming["peer"] is None
    _assert_streaming_result(streaming)


def _assert_streaming_result(result: dict) -> None:
    for part, delay_us in (
        ("throughput", 2_000),
        ("throughput_short", 300),
        ("throughput_no_delay", 0),
    ):
        assert result[part]["delay_us"] == delay_us
        lines = result[part]["lines"]
        assert {"rkrt Pool.map", "rkrt Pool.imap", "rkrt Pool.imap_async"} <= set(lines)
        for line in lines.values():
            assert len(line["seconds"]) == result["settings"]["rounds"]
            assert line["of_ideal"] > 0 and line["x_single"] > 0 and line["gap_us"] > 0
            # a run takes at least the double's delay (and something with none)
            assert line["run_us"] >= delay_us and line["run_us"] > 0
            assert 0 <= line["crowded"] <= 1
    assert result["run_batch"]["speedup"] > 0
    memory = result["memory"]
    assert memory["requests"] == result["settings"]["rss_requests"]
    assert {"rkrt Pool.submit", "rkrt Pool.imap", "rkrt Pool.imap_async"} <= set(memory)
    assert {"raw cffi floor", "rkrt Session.run", "rkrt.ort io_binding"} <= set(result["overhead"])
    assert result["checks"] and all(len(c) == 3 for c in result["checks"])


def test_streaming_benchmark_with_the_peer(tmp_path: Path) -> None:
    import peer

    if not peer.STAMP.is_dir():
        if IN_CI:
            pytest.fail(
                "CI=true but the peer is not in .cache/ez_rknn_async: make test installs it"
            )
        pytest.skip(
            "ztu_somemodelruntime_ez_rknn_async is not in .cache/ez_rknn_async (make test and "
            "make bench install it there)"
        )
    # in a process of its own, as make bench runs it: it sets the runtime's environment
    out = tmp_path / "s.json"
    script = Path(__file__).resolve().parents[2] / "bench" / "streaming.py"
    args = [sys.executable, str(script), "--quick", "--json", str(out)]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    assert result["peer"] == peer.VERSION
    _assert_streaming_result(result)
    assert {"ez_rknn_async run_async", "ez_rknn_async run_pipeline(3)"} <= set(
        result["throughput"]["lines"]
    )
    for part in ("throughput", "throughput_short"):
        vs = result[part]["peer_vs_rkrt"]
        assert vs["rounds"] == result["settings"]["rounds"] and vs["median"] > 0
        assert vs["verdict"] in ("ahead", "tie", "behind") and len(vs["ci95"]) == 2
    assert {"ez_rknn_async run", "ez_rknn_async io_binding"} <= set(result["overhead"])


def _lane_or_skip() -> aarch64_lane.Lane:
    if IN_CI or os.environ.get("RKRT_BENCH_BUILD_LANE") == "1":
        return aarch64_lane.ensure_lane()
    lane = aarch64_lane.cached_lane()
    if lane is None:
        pytest.skip(
            "the emulated aarch64 lane is not built (needs qemu-user-static and a cached "
            ".cache/aarch64/); run `make bench` once or set RKRT_BENCH_BUILD_LANE=1"
        )
    return lane


def test_emulated_lane_runs_rknnlite_next_to_rkrt(tmp_path: Path) -> None:
    lane = _lane_or_skip()
    result = run_all.emulated_lane(True, tmp_path, lane)
    assert result["environment"]["machine"] == "aarch64"
    assert result["environment"]["rknn_toolkit_lite2"] == "2.5.0"
    _assert_lane_result(result, set(LINE_LABELS))
    for model in result["models"]:
        assert {"rknnlite/run", "rknnlite/bind"} <= set(model["ratios"])


def _result(ratios: dict[str, float], over: dict[str, float], growth: int, calls: int) -> dict:
    line = {"rss_growth_bytes": growth, "rss_calls": calls}
    lines = {k: dict(line) for k in ("floor", "run", "bind", "rknnlite")}
    return {"models": [{"name": "m", "ratios": ratios, "lines": lines, "over_floor_us": over}]}


def test_target_checks_judge_against_the_stated_bounds() -> None:
    good = {"run/floor": 1.4, "bind/floor": 1.1, "rknnlite/run": 12.0, "rknnlite/bind": 25.0}
    bad = {"run/floor": 1.6, "bind/floor": 1.3, "rknnlite/run": 9.0, "rknnlite/bind": 19.0}
    # RKNNLite adds 20 us above the floor: rkrt adding 1 us is 20x less, 5 us only 4x.
    good_over = {"floor": 0.0, "run": 1.0, "bind": 0.5, "rknnlite": 20.0}
    bad_over = {"floor": 0.0, "run": 5.0, "bind": 2.0, "rknnlite": 20.0}
    passing = target_checks([("lane", _result(good, good_over, 1000, 100_000))])
    failing = target_checks([("lane", _result(bad, bad_over, 2 << 20, 100_000))])
    assert len(passing) == len(failing) == 6
    assert {v for _, _, v in passing} == {"PASS"}
    assert {v for _, _, v in failing} == {"FAIL"}
    # A line within the floor's noise is judged by the noise: a lower bound on its ratio.
    at_floor = _result(good, {**bad_over, "bind": -0.2}, 0, 100_000)
    model = at_floor["models"][0]
    model["over_floor_spread_us"] = {"bind": 0.5}
    assert overhead_ratio(model, "bind") == (40.0, True)
    model["over_floor_spread_us"] = {"bind": 2.0}
    checks = target_checks([("lane", at_floor)])
    assert [v for t, _, v in checks if "zero-copy" in t and "RKNNLite" in t] == ["FAIL"]
    short = target_checks([("lane", _result(good, good_over, 2 << 20, 500))])
    assert [v for t, _, v in short if "RSS" in t] == ["n/a (short)", "n/a (short)"]


def test_rss_growth_sees_a_leak_and_no_growth_without_one() -> None:
    import vendor_compare

    kept: list[bytearray] = []

    def leak() -> None:
        # 256 KiB, written to so it is resident; far more in total than any free heap.
        kept.append(bytearray(b"x" * (256 << 10)))

    assert vendor_compare.rss_growth(leak, 64) >= 8 << 20
    kept.clear()
    assert vendor_compare.rss_growth(lambda: None, 1000) < 1 << 20


@pytest.mark.parametrize("factor, verdict", [(1.03, "ahead"), (0.97, "behind"), (1.0, "tie")])
def test_streaming_compares_the_runtimes_round_by_round(factor: float, verdict: str) -> None:
    import random

    import streaming

    # Rounds share the machine's drift (the common factor); each line adds its own 0.5% noise.
    rng = random.Random(7)
    drift = [1 + 0.05 * rng.random() for _ in range(15)]
    rkrt = [0.2 * d * rng.gauss(1, 0.005) for d in drift]
    peer = [0.2 * factor * d * rng.gauss(1, 0.005) for d in drift]
    slower = [0.21 * d for d in drift]
    lines = {
        "rkrt Pool.map": {"seconds": rkrt, "median_s": sorted(rkrt)[7]},
        "ez_rknn_async run_pipeline(3)": {"seconds": peer, "median_s": sorted(peer)[7]},
        "ez_rknn_async run_async": {"seconds": slower, "median_s": sorted(slower)[7]},
    }
    vs = streaming._peer_vs(lines, "rkrt Pool.map")
    assert vs["peer"] == "ez_rknn_async run_pipeline(3)" and vs["rounds"] == 15
    low, high = vs["ci95"]
    assert low <= vs["median"] <= high and high - low < 0.02
    assert vs["verdict"] == verdict


def test_crowded_counts_runs_returning_close_to_another_contexts_on_one_cpu() -> None:
    import streaming

    us = 1e-6
    ends = [
        (0.0, 1, 0),  # context 2 returns 60 us later on CPU 0: both crowded
        (60 * us, 2, 0),
        (80 * us, 3, 1),  # alone on CPU 1, though 20 us from context 2's
        (400 * us, 1, 0),  # context 1 again 50 us later: itself, not another context
        (450 * us, 1, 0),
        (1000 * us, 2, 0),  # context 3 returns 100.5 us later: over the window
        (1100.5 * us, 3, 0),
    ]
    assert streaming._crowded(ends) == 2 / 7
    assert streaming._crowded(ends, window_s=101 * us) == 4 / 7
    assert streaming._crowded([]) == 0.0
