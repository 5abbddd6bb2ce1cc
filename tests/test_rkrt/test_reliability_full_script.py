"""scripts/reliability_full.py, the full-size reliability run behind the README's table, at
1/100 of its sizes: it imports this suite's workloads, so a change to them can break it (it
once stopped at the dynamic-shape dup that the suite's fault sweep had learned to expect)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "reliability_full.py"


def test_quick_run_completes_every_part() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    # the script exits non-zero when any part finds a failure
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    tried = [line.split(" | ")[0][2:] for line in result.stdout.splitlines()[2:]]
    faults, _ = tried[0].split(" ", 1)
    assert int(faults) > 1000, tried[0]
    assert tried[1:] == [
        "8 threads x 100 Pool.run (800 calls, 3 contexts)",
        "10000 run calls",
        "100 open/close cycles",
        "atheris, 5 s on the metadata parser",
    ]
