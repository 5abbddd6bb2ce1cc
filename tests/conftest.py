"""Suite-wide markers (`toolkit` tests need rknn-toolkit2, `board` tests a real NPU) and the
fixtures every folder uses, each under one name: `fake_so`, `rt`, `private_rt`."""

from __future__ import annotations

import gc
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Iterator

import crash_isolation
import pytest
from fake_rknnrt import FakeRuntime
from hypothesis import settings
from rkrt_support import IN_CI, NO_LEAKS, library

REPO = Path(__file__).resolve().parents[1]

if IN_CI:
    # CI gates a landing, so its draws are the same on every run: a failure there is a
    # regression, never an unlucky draw. Local runs keep drawing new examples (and replay
    # their failures from .hypothesis/); atheris follows the same rule (test_fuzz_metadata.py).
    settings.register_profile("ci", derandomize=True)
    settings.load_profile("ci")


def pytest_configure(config: pytest.Config) -> None:
    # The installed lane (make test-numpy2) must test the wheel: an import that silently falls
    # back to the source tree would hide a module the wheel lacks.
    if os.environ.get("RKRT_TEST_INSTALLED") != "1":
        return
    for package in ("rkrt", "emit"):
        spec = importlib.util.find_spec(package)
        origin = Path(spec.origin).resolve() if spec and spec.origin else None
        if origin is None or origin.parent == REPO / package:
            raise pytest.UsageError(
                f"RKRT_TEST_INSTALLED=1 but {package} is imported from {origin}, not from an "
                "installed wheel: install dist/rkrt-*.whl (make wheel) and run the venv's "
                "`pytest` script, not `python -m pytest` (which puts the cwd on sys.path)"
            )


def _toolkit_available() -> bool:
    return importlib.util.find_spec("rknn") is not None and (
        importlib.util.find_spec("rknn.api") is not None
    )


def _on_board() -> bool:
    try:
        compatible = Path("/proc/device-tree/compatible").read_bytes()
    except OSError:
        return False
    return b"rockchip" in compatible and bool(os.environ.get("RKRT_BOARD_LIBRARY"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_toolkit = _toolkit_available()
    on_board = _on_board()
    crash_isolation.mark(config, items)
    for item in items:
        if "toolkit" in item.keywords and not has_toolkit:
            if IN_CI:
                # CI must prove conversions: a missing toolkit is a broken setup, not a skip.
                raise pytest.UsageError(
                    "CI=true but rknn-toolkit2 is not importable: toolkit tests must run in CI. "
                    "Install it with `pip install --no-deps rknn-toolkit2==2.5.0` (make test does)."
                )
            item.add_marker(pytest.mark.skip(reason="rknn-toolkit2 is not installed"))
        if "board" in item.keywords and not on_board:
            item.add_marker(
                pytest.mark.skip(
                    reason="needs a Rockchip board with librknnrt.so "
                    "(set RKRT_BOARD_LIBRARY and run `pytest -m board` there)"
                )
            )


def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    return crash_isolation.run_isolated(item, nextitem)


@pytest.fixture(autouse=True)
def _planted_segfault(request: pytest.FixtureRequest) -> None:
    crash_isolation.plant_segfault(request.node.nodeid)


@pytest.fixture(scope="session")
def fake_so() -> Iterator[Path]:
    """Path of the test-double librknnrt.so; RKRT_LIBRARY points at it for the session."""
    path = library()
    previous = os.environ.get("RKRT_LIBRARY")
    os.environ["RKRT_LIBRARY"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("RKRT_LIBRARY", None)
    else:
        os.environ["RKRT_LIBRARY"] = previous


def _reached(path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeRuntime:
    """The double at `path`, the one rkrt loads for this test (RKRT_SOC unset), reset."""
    monkeypatch.setenv("RKRT_LIBRARY", str(path))
    monkeypatch.delenv("RKRT_SOC", raising=False)
    runtime = FakeRuntime(path)
    runtime.reset()
    return runtime


@pytest.fixture
def rt(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRuntime]:
    """The fake runtime, reached through RKRT_LIBRARY; afterwards nothing may be left live
    and no misuse may have been counted (tests that provoke misuse reset before returning)."""
    runtime = _reached(library(), monkeypatch)
    yield runtime
    gc.collect()
    assert runtime.live() == NO_LEAKS
    assert runtime.counter("unsafe") == 0


@pytest.fixture
def rk3588(monkeypatch: pytest.MonkeyPatch) -> None:
    """rkrt and the double both take the SoC for an RK3588 (3 NPU cores)."""
    monkeypatch.setenv("RKRT_SOC", "rk3588")
    monkeypatch.setenv("RKRT_FAKE_SOC", "rk3588")


@pytest.fixture
def private_rt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRuntime]:
    """A private copy of the double (its own live counters), reached through RKRT_LIBRARY,
    for tests that leave objects live on purpose (a memory block whose free was refused can
    never be freed): they must not show up in other tests. No misuse may be counted."""
    copy = tmp_path / "librknnrt.so"
    shutil.copy(library(), copy)
    runtime = _reached(copy, monkeypatch)
    yield runtime
    assert runtime.counter("unsafe") == 0
