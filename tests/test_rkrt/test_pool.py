"""rkrt.Pool: one context per core, many threads, the GIL released while C runs."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from rkrt_support import inputs_for, mlp, tolerance

import rkrt
from rkrt import CoreMask


@pytest.fixture
def rk3588(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RKRT_SOC", "rk3588")
    monkeypatch.setenv("RKRT_FAKE_SOC", "rk3588")


def test_default_is_one_context_per_core_of_the_soc(rt, rk3588) -> None:
    with rkrt.Pool(mlp().to_bytes()) as pool:
        assert len(pool) == 3
        masks = [rt.core_mask(s._context.handle) for s in pool.sessions]
        assert masks == [int(CoreMask.CORE_0), int(CoreMask.CORE_1), int(CoreMask.CORE_2)]
        assert rt.calls("rknn_dup_context") == 2 and "CORE_0, CORE_1, CORE_2" in repr(pool)


def test_rk3576_and_unknown_socs(rt, monkeypatch) -> None:
    monkeypatch.setenv("RKRT_FAKE_SOC", "rk3576")
    with rkrt.Pool(mlp().to_bytes(), soc="rk3576") as pool:
        assert [s.core_mask for s in pool.sessions] == [CoreMask.CORE_0, CoreMask.CORE_1]
    with rkrt.Pool(mlp().to_bytes(), soc="rk3566") as pool:
        assert [s.core_mask for s in pool.sessions] == [CoreMask.AUTO]
    with pytest.raises(ValueError, match="RK3566"):
        rkrt.Pool(mlp().to_bytes(), cores=["CORE_0"], soc="rk3566")


def test_explicit_cores_and_session_options(rt, rk3588) -> None:
    with rkrt.Pool(mlp().to_bytes(), cores=["0_1", "CORE_2"], cast="safe") as pool:
        assert [s.core_mask for s in pool.sessions] == [CoreMask.CORE_0_1, CoreMask.CORE_2]
        y = pool.run(np.zeros((1, 4), np.float64))  # cast="safe" reached every session
        assert y[0].shape == (1, 3)


def test_run_submit_map_compute_the_right_thing(rt, rk3588) -> None:
    model = mlp()
    xs = [inputs_for(model, seed=i)[0] for i in range(30)]
    with rkrt.Pool(model.to_bytes()) as pool:
        futures = [pool.submit(x) for x in xs]
        mapped = list(pool.map(xs))
        direct = [pool.run(x) for x in xs]
        for x, fut, m, d in zip(xs, futures, mapped, direct):
            want = model.reference(x)[0]
            for got in (fut.result()[0], m[0], d[0]):
                np.testing.assert_allclose(got, want, **tolerance("float16"))
    assert rt.counter("concurrent") == 0


def test_threads_run_in_parallel_with_the_gil_released(rt, rk3588) -> None:
    model = mlp()
    x = inputs_for(model)[0]
    rt.set_run_delay(20_000)
    with rkrt.Pool(model.to_bytes()) as pool:
        barrier = threading.Barrier(3)

        def work() -> None:
            barrier.wait()
            for _ in range(3):
                pool.run(x)

        threads = [threading.Thread(target=work) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert rt.max_parallel_runs() >= 2
    assert rt.counter("concurrent") == 0


def test_more_threads_than_contexts_never_share_one_at_once(rt, rk3588) -> None:
    model = mlp()
    x = inputs_for(model)[0]
    rt.set_run_delay(500, jitter_us=500)
    with rkrt.Pool(model.to_bytes(), cores=["CORE_0", "CORE_1"]) as pool:
        results = list(pool.map([x] * 40))
        threads = [threading.Thread(target=lambda: [pool.run(x) for _ in range(10)])
                   for _ in range(6)]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(results) == 40 and rt.counter("concurrent") == 0
    assert rt.max_parallel_runs() <= 2


def test_close_waits_then_refuses(rt, rk3588) -> None:
    model = mlp()
    rt.set_run_delay(5_000)
    pool = rkrt.Pool(model.to_bytes())
    fut = pool.submit(inputs_for(model)[0])
    pool.close()
    pool.close()
    assert fut.done() and fut.result()[0].shape == (1, 3)
    assert rt.live()["contexts"] == 0
    x = inputs_for(model)[0]
    for use in (lambda: pool.run(x), lambda: pool.submit(x), lambda: pool.map([x])):
        with pytest.raises(rkrt.ClosedError):
            use()


def test_failure_while_duplicating_closes_what_was_opened(rt, rk3588) -> None:
    rt.inject("rknn_dup_context", nth=2, code=-4)
    with pytest.raises(rkrt.RKNNError, match="rknn_dup_context"):
        rkrt.Pool(mlp().to_bytes())
    assert rt.live()["contexts"] == 0
