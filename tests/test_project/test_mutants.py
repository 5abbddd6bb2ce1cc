"""scripts/mutate.py in every CI run (about 2.5 min): each bug a board would punish, planted in
a scratch copy, must still fail the tests listed for it. A test weakened later, or a snippet
the code no longer contains, fails here instead of leaving a hole found only on a board."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "mutate.py"


def _mutant_names() -> list[str]:
    spec = importlib.util.spec_from_file_location("mutate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("mutate", module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return [m.name for m in module.MUTANTS]


def test_every_planted_board_bug_is_killed() -> None:
    names = _mutant_names()
    assert len(names) >= 14
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                            timeout=1800)  # fmt: skip
    found = re.findall(r"^(killed|SURVIVED|ERROR)\s+(\S+)", result.stdout, re.M)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert {name: verdict for verdict, name in found} == dict.fromkeys(names, "killed")
