"""rkrt.Pool under load: bounded work in flight, streaming in order, cancellation, close."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from concurrent.futures import CancelledError

import numpy as np
import pytest
from rkrt_support import inputs_for, many_inputs, mlp, tolerance

import rkrt


def _close_while(pool: rkrt.Pool, work, after_s: float) -> list:
    """``work(outcome)`` in a thread, ``pool.close(cancel=True)`` after ``after_s``: what work
    put in ``outcome``, then the exception that ended it (the thread must end promptly)."""
    outcome: list = []

    def run() -> None:
        try:
            work(outcome)
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=run)
    t.start()
    time.sleep(after_s)
    pool.close(cancel=True)
    t.join(5)
    assert not t.is_alive()
    return outcome


class Producer:
    """An endless-looking input stream that records how far it was read."""

    def __init__(self, xs: list[np.ndarray]) -> None:
        self.xs, self.read = xs, 0

    def __iter__(self):
        for x in self.xs:
            self.read += 1
            yield x


def test_max_pending_defaults_and_is_validated(rt, rk3588) -> None:
    with rkrt.Pool(mlp().to_bytes()) as pool:
        assert pool.max_pending == 12 and pool.in_flight == 0
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="max_pending must be a positive int"):
            rkrt.Pool(mlp().to_bytes(), max_pending=bad)
    assert rt.calls("rknn_init") == 1  # refused before opening anything


def test_submit_blocks_or_raises_at_the_bound(rt, rk3588) -> None:
    model = mlp()
    x = inputs_for(model)[0]
    rt.set_run_delay(50_000)
    with rkrt.Pool(model.to_bytes(), cores=["CORE_0"], max_pending=2) as pool:
        first = [pool.submit(x), pool.submit(x)]
        assert pool.in_flight == 2
        with pytest.raises(rkrt.BusyError, match="max_pending=2"):
            pool.submit(x, block=False)
        started = time.perf_counter()
        third = pool.submit(x)  # waits for the first to finish
        waited = time.perf_counter() - started
        assert first[0].done() and not first[1].done()
        assert waited > 0.5 * 0.050  # about one run's time
        assert pool.in_flight == 2
        for f in (*first, third):
            np.testing.assert_allclose(f.result()[0], model.reference(x)[0], **tolerance("float16"))
    assert pool.in_flight == 0


def test_a_fast_producer_never_has_more_than_max_pending_in_flight(rt, rk3588) -> None:
    model = mlp()
    xs = many_inputs(model, 200)
    rt.set_run_delay(300)
    peak = 0
    with rkrt.Pool(model.to_bytes(), max_pending=4) as pool:
        futures = []
        for x in xs:
            futures.append(pool.submit(x))
            peak = max(peak, pool.in_flight)
        results = [f.result()[0] for f in futures]
    assert peak == 4
    for x, y in zip(xs, results):
        np.testing.assert_allclose(y, model.reference(x)[0], **tolerance("float16"))
    assert rt.calls("rknn_run") == 200 and rt.counter("concurrent") == 0


def test_imap_streams_in_order_reading_ahead_at_most_max_pending(rt, rk3588) -> None:
    model = mlp()
    xs = many_inputs(model, 120)
    rt.set_run_delay(200, jitter_us=400)  # results complete out of order
    producer = Producer(xs)
    with rkrt.Pool(model.to_bytes(), max_pending=5) as pool:
        for i, y in enumerate(pool.imap(producer)):
            assert producer.read - i <= 5 + 1  # read ahead by the bound (+ the one in hand)
            np.testing.assert_allclose(y[0], model.reference(xs[i])[0], **tolerance("float16"))
        assert pool.map(xs[:7])[3][0].shape == (1, 3)
    assert i == 119 and rt.counter("concurrent") == 0


def test_leaving_imap_early_cancels_what_has_not_started(rt, rk3588) -> None:
    model = mlp()
    xs = many_inputs(model, 500)
    # Long runs: the three started after the first results are still running when the stream
    # closes, even on a loaded machine; the three queued behind them must be skipped
    # (max_pending=6 would otherwise let 3 + 6 run).
    rt.set_run_delay(300_000)
    with rkrt.Pool(model.to_bytes(), max_pending=6) as pool:
        stream = pool.imap(xs)
        got = [next(stream) for _ in range(3)]
        stream.close()
        deadline = time.monotonic() + 5
        while pool.in_flight and time.monotonic() < deadline:
            time.sleep(0.001)  # the runs started finish, the others are skipped
        assert pool.in_flight == 0
    assert len(got) == 3 and rt.calls("rknn_run") <= 3 + 3


def test_map_timeout_raises_and_cancels(rt, rk3588) -> None:
    model = mlp()
    rt.set_run_delay(20_000)
    for inputs in (many_inputs(model, 50), iter(many_inputs(model, 50))):  # list, iterator
        runs_before = rt.calls("rknn_run")
        with rkrt.Pool(model.to_bytes(), cores=["CORE_0"], max_pending=4) as pool:
            with pytest.raises(TimeoutError):
                pool.map(inputs, timeout=0.05)
            at_timeout = rt.calls("rknn_run")
            time.sleep(0.1)  # five runs' time: nothing new starts after the timeout
            # (+1: an item claimed just before it may be on its way into rknn_run)
            assert rt.calls("rknn_run") <= at_timeout + 1
        assert rt.calls("rknn_run") - runs_before < 10


def test_close_finishes_accepted_work_by_default(rt, rk3588) -> None:
    model = mlp()
    rt.set_run_delay(3_000)
    pool = rkrt.Pool(model.to_bytes(), max_pending=30)
    futures = [pool.submit(x) for x in many_inputs(model, 30)]
    pool.close()
    assert all(f.done() and f.result()[0].shape == (1, 3) for f in futures)
    assert rt.calls("rknn_run") == 30 and rt.live()["contexts"] == 0


def test_close_with_cancel_under_load_skips_queued_work_and_never_hangs(rt, rk3588) -> None:
    model = mlp()
    rt.set_run_delay(50_000)
    pool = rkrt.Pool(model.to_bytes(), max_pending=60)
    futures = [pool.submit(x) for x in many_inputs(model, 60)]
    time.sleep(0.01)  # the first three are running
    pool.close(cancel=True)
    cancelled = [f for f in futures if f.cancelled()]
    finished = [f for f in futures if not f.cancelled()]
    assert all(f.done() for f in futures)
    assert len(cancelled) >= 40 and len(finished) == rt.calls("rknn_run")
    for f in finished:
        assert f.result()[0].shape == (1, 3)
    with pytest.raises(CancelledError):
        cancelled[0].result()
    assert rt.live()["contexts"] == 0 and rt.counter("concurrent") == 0


def test_a_submitter_blocked_at_the_bound_gets_closed_error(rt, rk3588) -> None:
    model = mlp()
    x = inputs_for(model)[0]
    rt.set_run_delay(30_000)
    pool = rkrt.Pool(model.to_bytes(), cores=["CORE_0"], max_pending=1)
    pool.submit(x)
    outcome = _close_while(pool, lambda out: pool.submit(x), after_s=0.005)
    assert isinstance(outcome[0], rkrt.ClosedError)


def test_with_block_cancels_on_an_exception(rt, rk3588) -> None:
    model = mlp()
    rt.set_run_delay(50_000)
    with pytest.raises(KeyError), rkrt.Pool(model.to_bytes(), max_pending=40) as pool:
        futures = [pool.submit(x) for x in many_inputs(model, 40)]
        raise KeyError("the caller failed")
    assert sum(f.cancelled() for f in futures) >= 30


def test_close_from_a_callback_does_not_deadlock(rt, rk3588) -> None:
    model = mlp()
    pool = rkrt.Pool(model.to_bytes())
    done = threading.Event()
    fut = pool.submit(inputs_for(model)[0])
    fut.add_done_callback(lambda f: (pool.close(), done.set()))
    assert done.wait(5) and pool.sessions[0].closed


def test_errors_reach_the_future_and_the_pool_goes_on(rt, rk3588) -> None:
    model = mlp()
    with rkrt.Pool(model.to_bytes()) as pool:
        bad = pool.submit(np.zeros((1, 4), np.float64))
        with pytest.raises(rkrt.DTypeError):
            bad.result()
        with pytest.raises(rkrt.ShapeError):
            pool.map([np.zeros((1, 4), np.float32), np.zeros((2, 4), np.float32)])
        assert pool.submit(inputs_for(model)[0]).result()[0].shape == (1, 3)
        assert pool.in_flight == 0


def test_an_unclosed_pool_is_collected_and_its_threads_end(rt, rk3588) -> None:
    model = mlp()
    pool = rkrt.Pool(model.to_bytes())
    pool.submit(inputs_for(model)[0]).result()
    threads, ref = list(pool._dispatch._threads), weakref.ref(pool)
    del pool
    gc.collect()
    assert ref() is None
    for t in threads:
        t.join(5)
        assert not t.is_alive()


def test_closing_under_a_running_imap_ends_the_stream_without_hanging(rt, rk3588) -> None:
    model = mlp()
    rt.set_run_delay(10_000)
    pool = rkrt.Pool(model.to_bytes(), max_pending=6)
    outcome = _close_while(pool, lambda out: out.extend(pool.imap(many_inputs(model, 200))), 0.03)
    assert isinstance(outcome[-1], (CancelledError, rkrt.ClosedError))
    assert all(isinstance(y, list) for y in outcome[:-1]) and len(outcome) < 200
    assert rt.calls("rknn_run") < 200 and rt.live()["contexts"] == 0


# ---- map over a list: the pool's threads take the next item themselves ----


def _peak_in_flight(pool: rkrt.Pool, stop: threading.Event, peak: list[int]) -> threading.Thread:
    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], pool.in_flight)
            time.sleep(0.0005)

    t = threading.Thread(target=watch)
    t.start()
    return t


@pytest.mark.parametrize("max_pending", [12, 2])
def test_map_of_a_list_keeps_order_and_at_most_one_item_per_context_in_flight(
    rt, rk3588, max_pending
) -> None:
    model = mlp()
    xs = many_inputs(model, 90)
    rt.set_run_delay(300, jitter_us=600)  # items finish out of order
    stop, peak = threading.Event(), [0]
    with rkrt.Pool(model.to_bytes(), max_pending=max_pending) as pool:
        watcher = _peak_in_flight(pool, stop, peak)
        try:
            ys = pool.map(xs)
        finally:
            stop.set()
            watcher.join()
        assert pool.in_flight == 0
    assert peak[0] == min(3, max_pending)
    for x, y in zip(xs, ys):
        np.testing.assert_allclose(y[0], model.reference(x)[0], **tolerance("float16"))
    assert len(ys) == 90 and rt.calls("rknn_run") == 90 and rt.counter("concurrent") == 0


class SlowAt(list):
    """A list whose item ``slow`` takes ``delay_s`` to read (the pool's threads read it)."""

    def __init__(self, items: list, slow: int, delay_s: float) -> None:
        super().__init__(items)
        self.slow, self.delay_s = slow, delay_s

    def __getitem__(self, i):  # type: ignore[override]
        if i == self.slow:
            time.sleep(self.delay_s)
        return super().__getitem__(i)


def test_map_of_a_list_raises_the_first_failure_in_order_and_the_pool_goes_on(rt, rk3588) -> None:
    model = mlp()
    xs = many_inputs(model, 40)
    xs[9] = xs[9].astype(np.float64)  # DTypeError, claimed first but failing last
    xs[10] = np.zeros((2, 4), np.float32)  # ShapeError, failing first
    rt.set_run_delay(2_000)
    with rkrt.Pool(model.to_bytes()) as pool:
        with pytest.raises(rkrt.DTypeError):
            pool.map(SlowAt(xs, slow=9, delay_s=0.05))
        assert rt.calls("rknn_run") < 40  # nothing claimed after the first failure
        assert pool.in_flight == 0
        assert len(pool.map(xs[:9])) == 9
        assert pool.map([]) == []


def test_map_of_a_list_lets_other_callers_in_between_its_items(rt, rk3588) -> None:
    model = mlp()
    x = inputs_for(model)[0]
    rt.set_run_delay(5_000)
    with rkrt.Pool(model.to_bytes(), cores=["CORE_0"]) as pool:
        mapped = threading.Thread(target=pool.map, args=(many_inputs(model, 60),))
        mapped.start()
        time.sleep(0.02)
        other = pool.submit(x)
        other.result(5)
        runs_when_served = rt.calls("rknn_run")
        mapped.join()
    # Served within a couple of runs of its arrival, not after the map's 60 runs.
    assert runs_when_served < 20 and rt.calls("rknn_run") == 61


def test_closing_under_a_running_map_of_a_list_ends_it_without_hanging(rt, rk3588) -> None:
    model = mlp()
    rt.set_run_delay(10_000)
    pool = rkrt.Pool(model.to_bytes())
    outcome = _close_while(pool, lambda out: out.append(pool.map(many_inputs(model, 300))), 0.03)
    assert len(outcome) == 1 and isinstance(outcome[0], (CancelledError, rkrt.ClosedError))
    assert rt.calls("rknn_run") < 300 and rt.live()["contexts"] == 0
    assert pool.in_flight == 0
