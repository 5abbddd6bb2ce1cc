"""A test that segfaults fails alone: the rest of the session still runs and reports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from crash_isolation import PLANT_SEGFAULT

REPO = Path(__file__).resolve().parents[2]
CRASHING = "tests/test_rkrt/test_binding.py::test_native_float16_buffers_need_no_conversion"
# Before the crash, an in-process test of its folder; after it, an isolated neighbour and an
# in-process test of another folder (what the parent had set up must end before it).
BEFORE = "tests/test_rkrt/test_session.py::test_specs_describe_the_model"
AFTER = (
    "tests/test_rkrt/test_external.py::test_from_phys_uses_the_callers_mapping",
    "tests/test_fake_rknnrt/test_fake_runtime.py::test_queries_describe_the_model",
)


def test_planted_segfault_fails_only_its_test(tmp_path: Path) -> None:
    env = {**os.environ, PLANT_SEGFAULT: CRASHING}
    # Run from elsewhere: `python -m` puts the working directory on sys.path, which in the
    # installed-wheel lane would import the source tree (conftest.py refuses that).
    ids = [str(REPO / node) for node in (BEFORE, CRASHING, *AFTER)]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", *ids],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 1, out[-3000:] + proc.stderr[-2000:]
    failed = [line for line in out.splitlines() if line.startswith("FAILED ")]
    # "FAILED <path relative to the cwd>::<test>", and under CI=true pytest adds " - <reason>"
    assert len(failed) == 1 and failed[0].split(" - ", 1)[0].endswith(CRASHING), out[-3000:]
    assert "crashed with SIGSEGV" in out, out[-3000:]
    assert "1 failed, 3 passed" in out, out[-3000:]
