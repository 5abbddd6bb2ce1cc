"""rkrt.Pool from asyncio: run_async, imap_async, backpressure and cancellation."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from rkrt_support import gather_ticking, many_inputs, mlp, tolerance

import rkrt
from rkrt.gate import Gate


def test_run_async_computes_on_the_pool_threads_without_blocking_the_loop(rt, rk3588) -> None:
    model = mlp()
    xs = many_inputs(model, 60)
    rt.set_run_delay(2_000)

    async def main(pool: rkrt.Pool) -> tuple[list, int, int]:
        peak = 0

        async def one(x: np.ndarray) -> list[np.ndarray]:
            nonlocal peak
            call = pool.run_async(x)
            peak = max(peak, pool.in_flight)
            return await call

        results, ticks = await gather_ticking([one(x) for x in xs])
        return results, ticks, max(peak, pool.in_flight)

    with rkrt.Pool(model.to_bytes(), max_pending=4) as pool:
        results, ticks, peak = asyncio.run(main(pool))
    for x, y in zip(xs, results):
        np.testing.assert_allclose(y[0], model.reference(x)[0], **tolerance("float16"))
    # 60 runs of 2 ms on 3 contexts: ~40 ms, during which the loop kept ticking
    assert ticks >= 5 and rt.max_parallel_runs() >= 2 and rt.counter("concurrent") == 0


def test_run_async_raises_the_runs_error_and_refuses_a_closed_pool(rt, rk3588) -> None:
    model = mlp()
    pool = rkrt.Pool(model.to_bytes())

    async def main() -> None:
        with pytest.raises(rkrt.DTypeError, match="float64"):
            await pool.run_async(np.zeros((1, 4), np.float64))
        assert pool.in_flight == 0
        (y,) = await pool.run_async(many_inputs(model, 1)[0])  # the pool goes on
        assert y.shape == (1, 3)
        pool.close()
        with pytest.raises(rkrt.ClosedError):
            await pool.run_async(many_inputs(model, 1)[0])

    asyncio.run(main())
    assert pool.in_flight == 0 and rt.live()["contexts"] == 0


def test_waiting_coroutines_respect_the_bound(rt, rk3588) -> None:
    model = mlp()
    rt.set_run_delay(1_000)
    seen: list[int] = []

    async def main(pool: rkrt.Pool) -> None:
        async def one(x: np.ndarray) -> None:
            await pool.run_async(x)
            seen.append(pool.in_flight)

        await asyncio.gather(*[one(x) for x in many_inputs(model, 80)])

    with rkrt.Pool(model.to_bytes(), max_pending=3) as pool:
        asyncio.run(main(pool))
        assert pool.in_flight == 0
    assert len(seen) == 80 and max(seen) <= 3 and rt.calls("rknn_run") == 80


def test_cancelled_awaits_leave_no_context_mid_run_and_no_slot_taken(rt, rk3588) -> None:
    model = mlp()
    xs = many_inputs(model, 40)
    rt.set_run_delay(20_000)

    async def main(pool: rkrt.Pool) -> tuple[list, list[int]]:
        tasks = [asyncio.create_task(pool.run_async(x)) for x in xs]
        await asyncio.sleep(0.003)  # some running, some queued, most waiting at the gate
        # cancel() is True for a task not done yet: its await ends with CancelledError
        cancelled = [i for i in range(1, 40, 2) if tasks[i].cancel()]
        return await asyncio.gather(*tasks, return_exceptions=True), cancelled

    with rkrt.Pool(model.to_bytes(), max_pending=6) as pool:
        results, cancelled = asyncio.run(main(pool))
        assert pool.in_flight == 0  # every slot came back, the cancelled ones included
        again = pool.run(xs[0])  # and every context is usable
    assert len(cancelled) >= 10  # 40 runs of 20 ms on 3 contexts take far more than 3 ms
    for i, (x, y) in enumerate(zip(xs, results)):
        if i in cancelled:
            assert isinstance(y, asyncio.CancelledError)
        else:
            np.testing.assert_allclose(y[0], model.reference(x)[0], **tolerance("float16"))
    # A cancelled await whose run had started (at most max_pending of them) still ran; the
    # others never did.
    kept = 40 - len(cancelled)
    assert kept + 1 <= rt.calls("rknn_run") <= kept + 1 + 6
    np.testing.assert_allclose(again[0], model.reference(xs[0])[0], **tolerance("float16"))
    assert rt.counter("concurrent") == 0


def test_a_cancelled_await_of_a_queued_run_skips_it(rt, rk3588) -> None:
    model = mlp()
    x = many_inputs(model, 1)[0]
    rt.set_run_delay(50_000)

    async def main(pool: rkrt.Pool) -> list:
        tasks = [asyncio.create_task(pool.run_async(x)) for _ in range(4)]
        await asyncio.sleep(0.01)  # the first is running, three are queued behind it
        assert pool.in_flight == 4
        for t in tasks[1:]:
            t.cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    with rkrt.Pool(model.to_bytes(), cores=["CORE_0"], max_pending=4) as pool:
        results = asyncio.run(main(pool))
        assert pool.in_flight == 0
    assert isinstance(results[0], list)
    assert all(isinstance(r, asyncio.CancelledError) for r in results[1:])
    assert rt.calls("rknn_run") == 1  # the three queued runs never started


def test_imap_async_streams_in_order_from_an_async_source(rt, rk3588) -> None:
    model = mlp()
    xs = many_inputs(model, 50)
    rt.set_run_delay(300, jitter_us=600)
    read = 0

    async def source():
        nonlocal read
        for x in xs:
            read += 1
            yield x

    async def main(pool: rkrt.Pool) -> list:
        out = []
        async for y in pool.imap_async(source()):
            assert read - len(out) <= 4 + 1
            out.append(y)
        return out

    with rkrt.Pool(model.to_bytes(), max_pending=4) as pool:
        results = asyncio.run(main(pool))
    assert len(results) == 50
    for x, y in zip(xs, results):
        np.testing.assert_allclose(y[0], model.reference(x)[0], **tolerance("float16"))


def test_leaving_imap_async_early_cancels_the_rest(rt, rk3588) -> None:
    model = mlp()
    rt.set_run_delay(3_000)

    async def main(pool: rkrt.Pool) -> int:
        n = 0
        async for _ in pool.imap_async(many_inputs(model, 300)):
            n += 1
            if n == 5:
                break
        await asyncio.sleep(0.02)  # the runs already started finish
        return n

    with rkrt.Pool(model.to_bytes(), max_pending=6) as pool:
        assert asyncio.run(main(pool)) == 5
        assert pool.in_flight == 0
    assert rt.calls("rknn_run") <= 5 + 6


def test_closing_wakes_coroutines_waiting_at_the_bound(rt, rk3588) -> None:
    model = mlp()
    rt.set_run_delay(20_000)

    async def main(pool: rkrt.Pool) -> list:
        tasks = [asyncio.create_task(pool.run_async(x)) for x in many_inputs(model, 10)]
        await asyncio.sleep(0.005)
        await asyncio.get_running_loop().run_in_executor(None, pool.close)
        return await asyncio.gather(*tasks, return_exceptions=True)

    pool = rkrt.Pool(model.to_bytes(), cores=["CORE_0"], max_pending=2)
    results = asyncio.run(main(pool))
    assert sum(isinstance(r, rkrt.ClosedError) for r in results) == 8
    assert all(isinstance(r, list) for r in results[:2])


def test_gate_hands_slots_first_come_first_served_across_threads_and_loops() -> None:
    gate = Gate(1, "test")
    gate.acquire()
    order: list[str] = []

    async def main() -> None:
        async def waiter(name: str) -> None:
            await gate.acquire_async()
            order.append(name)
            gate.release()

        a = asyncio.create_task(waiter("a"))
        await asyncio.sleep(0)
        b = asyncio.create_task(waiter("b"))
        c = asyncio.create_task(waiter("c"))
        await asyncio.sleep(0)
        b.cancel()  # cancelled while queued: takes nothing
        await asyncio.sleep(0)
        gate.release()
        await asyncio.gather(a, c, return_exceptions=True)

    asyncio.run(main())
    assert order == ["a", "c"] and gate.in_flight == 0


def test_gate_slot_handed_to_a_coroutine_cancelled_meanwhile_comes_back() -> None:
    gate = Gate(1, "test")

    async def main() -> None:
        await gate.acquire_async()
        task = asyncio.create_task(gate.acquire_async())
        await asyncio.sleep(0)
        gate.release()  # handed to task (resolved on the loop's next turn) ...
        task.cancel()  # ... which is cancelled before it could run
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)

    asyncio.run(main())
    assert gate.in_flight == 0
    gate.acquire(block=False)  # the slot is free again
