"""bench/session_overhead.py runs end to end in --quick mode (timings are not asserted)."""

from __future__ import annotations

import json

import session_overhead


def test_quick_run_writes_every_line(rt, tmp_path, capsys) -> None:
    output = tmp_path / "result.json"
    result = session_overhead.main(["--quick", "--output", str(output)])
    assert json.loads(output.read_text()) == json.loads(json.dumps(result))
    lines = result["lines"]
    assert set(lines) == {"floor", "floor_alloc", "run", "run_out", "bind", "bind_fp16"}
    assert lines["floor"]["ratio_to_floor"] == 1.0
    for row in lines.values():
        assert 0 < row["median_us"] <= row["p99_us"]
    assert all(lines[k]["rss_growth_bytes"] is not None for k in ("run", "run_out", "bind"))
    assert set(result["targets"]) == {"run", "bind"}
    printed = capsys.readouterr().out
    assert "target run <= 1.5x floor" in printed and "bind_fp16" in printed
