"""Shared helpers of the tests: the test double's path, small fake models, inputs, `IN_CI`.

The fixtures (`rt`, `private_rt`, `fake_so`) are in conftest.py.
"""

from __future__ import annotations

import functools
import os
import tracemalloc
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from fake_rknnrt import Dense, FakeModel, build_library

NO_LEAKS = {"contexts": 0, "mems": 0, "outputs": 0}
# Under CI=true nothing that could run may skip (conftest.py, tests/test_bench/).
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def rss_bytes() -> int:
    """Resident set size of this process (Linux, no psutil: the board tests use it too)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def python_allocations(
    step: Callable[[], Any], n: int = 2000, warmup: int = 100
) -> tuple[int, int]:
    """Bytes Python still holds after ``n`` calls of ``step`` and its peak above the start
    (tracemalloc), measured after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(n):
            step()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return after - before, peak - before


@functools.cache
def library() -> Path:
    return build_library()


def mlp(
    widths: Sequence[int] = (4, 100, 3),
    dtype: str = "float16",
    seed: int = 0,
    **model_options: object,
) -> FakeModel:
    """A dense relu network ending in softmax, with random weights from ``seed``."""
    rng = np.random.default_rng(seed)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        last = i == len(widths) - 2
        w = rng.normal(0, 1 / np.sqrt(n_in), (n_in, n_out)).astype(np.float32)
        b = rng.normal(0, 0.1, n_out).astype(np.float32)
        layers.append(Dense(w, b, "softmax" if last else "relu"))
    return FakeModel(layers=layers, dtype=dtype, **model_options)


def inputs_for(model: FakeModel, batch: int | None = None, seed: int = 1) -> list[np.ndarray]:
    """Random float32 inputs of the model's input widths (batch: the model's first one)."""
    rng = np.random.default_rng(seed)
    rows = model.batch if batch is None else batch
    return [rng.normal(size=(rows, w)).astype(np.float32) for _, w in model.inputs]


def many_inputs(model: FakeModel, n: int) -> list[np.ndarray]:
    """n different first inputs for the model (seeds 0 .. n-1)."""
    return [inputs_for(model, seed=i)[0] for i in range(n)]


def tolerance(dtype: str) -> dict[str, float]:
    return {"rtol": 2e-2, "atol": 2e-3} if dtype != "float32" else {"rtol": 1e-5, "atol": 1e-6}


async def gather_ticking(awaitables: Sequence[Any]) -> tuple[list[Any], int]:
    """asyncio.gather of ``awaitables`` and how many 1 ms turns the event loop made meanwhile
    (none when the awaited work blocks the loop)."""
    import asyncio

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    tick = asyncio.create_task(ticker())
    try:
        return list(await asyncio.gather(*awaitables)), ticks
    finally:
        tick.cancel()
