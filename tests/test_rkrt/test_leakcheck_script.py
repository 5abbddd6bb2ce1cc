"""scripts/leakcheck.sh: an rkrt workload on the test double built with AddressSanitizer and
LeakSanitizer, in every CI run (about 5 s): no memory error, no leak with a frame in the
runtime, nothing left live in the double at the end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "leakcheck.sh"


def test_sanitized_workload_finds_no_error_and_no_leak() -> None:
    result = subprocess.run(["bash", str(SCRIPT)], env={**os.environ, "PYTHON": sys.executable},
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "nothing live in the double" in result.stdout
    assert "ASan errors: none" in result.stdout
    assert "leaks in the double: none" in result.stdout
