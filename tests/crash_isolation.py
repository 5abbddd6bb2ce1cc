"""Crash isolation: tests that touch raw runtime memory run in a forked child process.

A regression in external memory, zero-copy or matmul code tends to segfault rather than
fail; run in-process, that would end the whole session with no report at all. In a fork the
crash becomes that test's failure ("crashed with SIGSEGV") and the session goes on. A fork
costs about a millisecond; the child's session fixtures are rebuilt per test (cached builds).

tests/conftest.py marks the files in CRASH_PRONE `isolated` and installs the hooks below.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import signal
from pathlib import Path

import pytest
from _pytest.runner import runtestprotocol

CRASH_PRONE = frozenset({
    "test_binding.py", "test_external.py", "test_camera_example.py", "test_board_fidelity.py",
    "test_matmul.py", "test_matmul_fake.py", "test_matmul_layout.py", "test_matmul_mlp.py",
    "test_matmul_quant.py",
})  # fmt: skip
# Test-only: the node id of a test that segfaults at its start (proves the isolation works).
PLANT_SEGFAULT = "RKRT_TEST_PLANT_SEGFAULT"


def mark(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of CRASH_PRONE files `isolated` (not where fork is unavailable)."""
    config.addinivalue_line("markers", "isolated: runs in a forked child (crash isolation)")
    if not hasattr(os, "fork"):
        return
    for item in items:
        if Path(str(item.fspath)).name in CRASH_PRONE:
            item.add_marker(pytest.mark.isolated)


def run_isolated(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """pytest_runtest_protocol for `isolated` items: run in a fork, report in the parent."""
    if item.get_closest_marker("isolated") is None:
        return None
    hook = item.ihook
    hook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for report in _forked_reports(item):
        hook.pytest_runtest_logreport(report=report)
    # The parent still holds what earlier in-process tests set up (a folder, a module): end
    # what nextitem does not share, as pytest's own teardown would, or the next in-process
    # test of another folder finds "previous item was not torn down properly".
    call = pytest.CallInfo.from_call(
        lambda: item.session._setupstate.teardown_exact(nextitem), "teardown"
    )
    if call.excinfo is not None:
        hook.pytest_runtest_logreport(report=hook.pytest_runtest_makereport(item=item, call=call))
    hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


def _forked_reports(item: pytest.Item) -> list[pytest.TestReport]:
    config = item.config
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run the test, send its reports, never return into pytest
        os.close(read)
        try:
            reports = runtestprotocol(item, log=False, nextitem=None)
            data = [config.hook.pytest_report_to_serializable(config=config, report=r)
                    for r in reports]  # fmt: skip
            with os.fdopen(write, "wb") as f:
                pickle.dump(data, f)
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        payload = f.read()
    _, status = os.waitpid(pid, 0)
    if payload:
        return [config.hook.pytest_report_from_serializable(config=config, data=d)
                for d in pickle.loads(payload)]  # fmt: skip
    if os.WIFSIGNALED(status):
        why = f"crashed with {signal.Signals(os.WTERMSIG(status)).name}"
    else:
        why = f"exited with status {os.WEXITSTATUS(status)} before reporting"
    return [pytest.TestReport(item.nodeid, item.location, {item.name: 1}, "failed",
                              f"{item.nodeid}: the test process {why}", "call")]  # fmt: skip


def plant_segfault(nodeid: str) -> None:
    """Segfault now if PLANT_SEGFAULT names this test (conftest.py calls it before each)."""
    if os.environ.get(PLANT_SEGFAULT) == nodeid:
        ctypes.string_at(0)  # reads address 0: SIGSEGV
