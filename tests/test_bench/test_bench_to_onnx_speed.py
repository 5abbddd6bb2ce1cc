"""bench/to_onnx_speed.py runs end to end in its quick form (no timing is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import to_onnx_speed


def test_quick_benchmark_writes_table_and_json(tmp_path: Path, capsys) -> None:
    assert to_onnx_speed.main(["--quick", "--results", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "emit.to_onnx (initializers in place)" in printed
    assert "Constant nodes from tolist()" in printed
    result = json.loads((tmp_path / "to_onnx_speed.json").read_text())
    assert result["model"] == "64-256-256-10"
    assert len(result["emit_seconds"]) == len(result["constant_seconds"]) == result["repeat"]
    assert result["speedup"] == result["constant_median_s"] / result["emit_median_s"]
    assert f"speedup {result['speedup']:.1f}x" in printed
    # Same float32 weights either way: sizes within the few bytes of graph structure.
    assert abs(result["emit_onnx_bytes"] - result["constant_onnx_bytes"]) < 2_000
    assert result["emit_onnx_bytes"] > 4 * 85_002
