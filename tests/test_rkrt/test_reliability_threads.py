"""Threads: a Pool hammered by many threads, and one Session shared by several.

Every result must equal the single-threaded one bit for bit (same runtime, same numbers), the
test double must never see two threads inside one context ("concurrent" stays 0), and nothing
may stay live. A shared Session serialises its callers with a lock (documented in
rkrt.Session): at most one of its runs is ever in flight.

`hammer_pool` is also the full-size workload of scripts/reliability_full.py (8 threads x 10^4
runs); here it runs bounded so it fits CI.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import rkrt_support
from fake_rknnrt import FakeModel, FakeRuntime
from rkrt_support import mlp

import rkrt

MODEL = mlp((6, 24, 4), dtype="float16", seed=5)
N_DISTINCT = 64  # distinct inputs, so a result handed to the wrong caller is noticed


def distinct_inputs(model: FakeModel, n: int = N_DISTINCT) -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    return [rng.normal(size=(model.batch, model.inputs[0][1])).astype(np.float32)
            for _ in range(n)]  # fmt: skip


def single_threaded(model: FakeModel, xs: list[np.ndarray]) -> list[np.ndarray]:
    with rkrt.Session(model.to_bytes()) as s:
        return [s.run(x)[0].copy() for x in xs]


def hammer_pool(
    runtime: FakeRuntime,
    model: FakeModel,
    threads: int,
    runs_per_thread: int,
    delay_us: int,
    jitter_us: int,
) -> dict[str, Any]:
    """`threads` threads each calling Pool.run `runs_per_thread` times on random inputs, with
    random sleeps inside rknn_run; every result is checked against the single-threaded one."""
    xs = distinct_inputs(model)
    expected = single_threaded(model, xs)
    runtime.reset()
    runtime.set_run_delay(delay_us, jitter_us)
    wrong: list[str] = []
    start = time.perf_counter()
    with rkrt.Pool(model.to_bytes(), soc="rk3588") as pool:

        def worker(seed: int) -> int:
            rng = random.Random(seed)
            for _ in range(runs_per_thread):
                k = rng.randrange(len(xs))
                (y,) = pool.run(xs[k])
                if not np.array_equal(y, expected[k]):
                    wrong.append(f"thread {seed}: input {k}")
            return runs_per_thread

        with ThreadPoolExecutor(threads) as ex:
            done = sum(ex.map(worker, range(threads)))
        contexts = len(pool)
    seconds = time.perf_counter() - start
    runtime.set_run_delay(0, 0)
    return {
        "threads": threads,
        "runs": done,
        "contexts": contexts,
        "wrong": wrong,
        "concurrent": runtime.counter("concurrent"),
        "unsafe": runtime.counter("unsafe"),
        "max_parallel_runs": runtime.max_parallel_runs(),
        "live": runtime.live(),
        "seconds": seconds,
    }


def test_pool_8_threads_every_result_equals_single_threaded(rt) -> None:
    report = hammer_pool(rt, MODEL, threads=8, runs_per_thread=1250, delay_us=2, jitter_us=40)
    assert report["runs"] == 8 * 1250 == rt.calls("rknn_run")
    assert report["wrong"] == []
    assert report["concurrent"] == report["unsafe"] == 0
    assert report["live"] == rkrt_support.NO_LEAKS
    # One context per core, several in flight at once (the GIL is released in rknn_run).
    assert report["contexts"] == 3 and report["max_parallel_runs"] >= 2


def test_pool_map_and_submit_keep_order_and_values(rt) -> None:
    xs = distinct_inputs(MODEL, 200)
    expected = single_threaded(MODEL, xs)
    rt.set_run_delay(0, 30)
    with rkrt.Pool(MODEL.to_bytes(), soc="rk3588") as pool:
        mapped = [y for (y,) in pool.map(xs)]
        futures = [pool.submit(x) for x in xs]
        submitted = [f.result()[0] for f in futures]
    rt.set_run_delay(0, 0)
    for got in (mapped, submitted):
        assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    assert rt.counter("concurrent") == 0


def test_one_session_shared_by_threads_serialises(rt) -> None:
    xs = distinct_inputs(MODEL)
    expected = single_threaded(MODEL, xs)
    rt.reset()
    rt.set_run_delay(20, 80)  # long enough that unserialised callers would overlap
    wrong = []
    with rkrt.Session(MODEL.to_bytes()) as s:

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(150):
                k = rng.randrange(len(xs))
                if not np.array_equal(s.run(xs[k])[0], expected[k]):
                    wrong.append(k)

        with ThreadPoolExecutor(6) as ex:
            list(ex.map(worker, range(6)))
    rt.set_run_delay(0, 0)
    assert wrong == []
    assert rt.calls("rknn_run") == 6 * 150
    assert rt.counter("concurrent") == 0
    assert rt.max_parallel_runs() == 1  # serialised: never two runs of it at once


def test_shared_bound_session_serialises(rt) -> None:
    rt.set_run_delay(10, 40)
    with rkrt.Session(MODEL.to_bytes()) as s, s.bind() as b:
        x = distinct_inputs(MODEL, 1)[0]
        b.inputs[0][...] = x
        with ThreadPoolExecutor(4) as ex:
            list(ex.map(lambda _: [b.run() for _ in range(100)], range(4)))
        np.testing.assert_array_equal(b.outputs[0], single_threaded(MODEL, [x])[0])
    rt.set_run_delay(0, 0)
    assert rt.counter("concurrent") == 0 and rt.max_parallel_runs() == 1


@pytest.mark.parametrize("closer", ["session", "pool"])
def test_close_while_threads_run(rt, closer: str) -> None:
    """Closing under load: callers finish or get ClosedError; nothing crashes or leaks."""
    xs = distinct_inputs(MODEL, 8)
    expected = single_threaded(MODEL, xs)
    rt.set_run_delay(0, 50)
    target: Any = (
        rkrt.Session(MODEL.to_bytes()) if closer == "session"
        else rkrt.Pool(MODEL.to_bytes(), soc="rk3588")
    )  # fmt: skip
    outcomes: list[str] = []
    started = threading.Barrier(5)

    def worker(seed: int) -> None:
        started.wait()
        k = 0
        while True:
            k = (k + 1) % len(xs)
            try:
                (y,) = target.run(xs[k])
            except rkrt.ClosedError:
                outcomes.append("closed")
                return
            if not np.array_equal(y, expected[k]):
                outcomes.append("wrong")
                return

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.05)
    target.close()
    for t in threads:
        t.join(timeout=30)
    rt.set_run_delay(0, 0)
    assert outcomes == ["closed"] * 4
    assert rt.counter("concurrent") == 0 and rt.calls("rknn_run") > 0
