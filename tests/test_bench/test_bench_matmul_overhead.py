"""bench/matmul_overhead.py runs end to end in --quick mode (no timing is asserted)."""

from __future__ import annotations

from pathlib import Path

import matmul_overhead


def test_quick_run_reports_every_line_and_ratio(rt, tmp_path: Path, capsys) -> None:
    argv = ["--quick", "--shape", "2,40,24", "--json", str(tmp_path / "r.json")]
    result = matmul_overhead.main(argv)
    assert result["shape"] == {"M": 2, "K": 40, "N": 24}
    assert set(result["median_us"]) == set(matmul_overhead.LINES)
    assert all(v > 0 for v in result["median_us"].values())
    assert set(result["ratios"]) == {f"{a}/{b}" for a, b in matmul_overhead.RATIOS}
    assert (tmp_path / "r.json").is_file()
    out = capsys.readouterr().out
    assert "matmul/session" in out and "M=2 K=40 N=24" in out
