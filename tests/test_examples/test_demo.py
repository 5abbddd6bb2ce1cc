"""`make demo` end to end: convert, verify on the simulator, predict through rkrt.sklearn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import rkrt

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.toolkit
def test_demo_converts_verifies_and_predicts_on_the_emulated_board() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Every compute layer of every model runs on the NPU." in out
    board = out.split("EMULATED runtime", 1)[1]
    # Four models (digits, diabetes x fp16, int8), each chunked == row at a time.
    assert board.count("== row at a time: True") == 4
    assert "python -m rkrt info" in board
    # The board instructions name the wheel `make wheel` builds (tests/test_packaging.py checks
    # that name against the built wheel).
    assert "`make wheel` leaves dist/" in board
    assert f"pip install rkrt-{rkrt.__version__}-py3-none-any.whl" in board
