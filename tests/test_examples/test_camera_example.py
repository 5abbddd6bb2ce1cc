"""The camera service example (examples/camera_service), run bounded on the test double."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[2] / "examples" / "camera_service" / "service.py"
FRAMES = 300


def run_service(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RKRT_LIBRARY"}  # -> emulated mode
    return subprocess.run([sys.executable, str(SERVICE), *args], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_bounded_run_reports_latency_against_run() -> None:
    done = run_service("--frames", str(FRAMES), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["emulated"] and report["runtime"].startswith("EMULATED")
    assert report["frames"] == FRAMES and report["warmup_frames"] == FRAMES // 10
    # Every frame went through both paths, and both computed the same results.
    calls = report["calls"]
    assert calls["rknn_run"] == 2 * FRAMES and calls["rknn_inputs_set"] == FRAMES
    assert calls["rknn_create_mem_from_fd"] == 1 and calls["rknn_set_io_mem"] == 2  # bound once
    assert report["results_identical"] and report["fd_open_after_close"]
    assert report["live_after"] == {"contexts": 0, "mems": 0, "outputs": 0}
    assert report["bound"]["rss_growth_kib"] < 512  # nothing allocated per frame
    for mode in ("bound", "run"):
        for key in ("service_us", "end_to_end_us"):
            st = report[mode][key]
            assert 0 < st["p50"] <= st["p99"] and st["mean"] > 0
        # A frame is served after it was written: end to end covers the service time.
        assert report[mode]["end_to_end_us"]["p50"] >= report[mode]["service_us"]["p50"]
    ratio = report["bound"]["service_us"]["p50"] / report["run"]["service_us"]["p50"]
    assert abs(report["ratio_service_p50"] - ratio) < 1e-9 and ratio > 0


def test_human_report_and_argument_errors() -> None:
    done = run_service("--frames", "40")
    assert done.returncode == 0, done.stderr
    assert "EMULATED" in done.stdout and "ratio bound / run" in done.stdout
    bad = run_service("--frames", "5")
    assert bad.returncode == 2 and "at least 20" in bad.stderr
    env_set = subprocess.run([sys.executable, str(SERVICE), "--frames", "40"],
                             env={**os.environ, "RKRT_LIBRARY": "/nonexistent/librknnrt.so"},
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert env_set.returncode != 0 and "pass --model" in env_set.stderr
