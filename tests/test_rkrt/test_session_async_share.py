"""Session.run_async (asyncio on the Session's own thread) and weight sharing between Sessions."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref

import numpy as np
import pytest
from fake_rknnrt import Dense, FakeModel
from rkrt_support import gather_ticking, inputs_for, many_inputs, mlp, tolerance

import rkrt

SHARE_WEIGHT_MEM = 0x20


def test_run_async_runs_off_the_loop_in_order_of_calls(rt) -> None:
    model = mlp()
    xs = many_inputs(model, 12)
    rt.set_run_delay(2_000)

    with rkrt.Session(model.to_bytes()) as session:
        results, ticks = asyncio.run(gather_ticking([session.run_async(x) for x in xs]))
        assert session._async.in_flight == 0
    for x, y in zip(xs, results):
        np.testing.assert_allclose(y[0], model.reference(x)[0], **tolerance("float16"))
    assert ticks >= 5 and rt.counter("concurrent") == 0


def test_run_async_cancellation_and_close(rt) -> None:
    model = mlp()
    x = inputs_for(model)[0]
    rt.set_run_delay(10_000)

    async def main(session: rkrt.Session) -> list:
        tasks = [asyncio.create_task(session.run_async(x)) for _ in range(6)]
        await asyncio.sleep(0.003)
        for t in tasks[2:]:
            t.cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    session = rkrt.Session(model.to_bytes())
    results = asyncio.run(main(session))
    assert all(isinstance(r, list) for r in results[:2])
    assert all(isinstance(r, asyncio.CancelledError) for r in results[2:])
    assert rt.calls("rknn_run") == 2  # the cancelled ones never ran

    async def queued_then_closed() -> list:
        tasks = [asyncio.create_task(session.run_async(x)) for _ in range(4)]
        await asyncio.sleep(0.003)
        await asyncio.get_running_loop().run_in_executor(None, session.close)
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(queued_then_closed())
    assert isinstance(results[0], list)  # running when close() came: finished first
    assert all(isinstance(r, (asyncio.CancelledError, rkrt.ClosedError)) for r in results[1:])
    with pytest.raises(rkrt.ClosedError):
        asyncio.run(session.run_async(x))
    assert rt.live()["contexts"] == 0


def test_an_unclosed_session_with_its_thread_is_collected(rt) -> None:
    model = mlp()
    session = rkrt.Session(model.to_bytes())
    asyncio.run(session.run_async(inputs_for(model)[0]))
    thread = session._async._threads[0]
    ref = weakref.ref(session)
    del session
    gc.collect()
    assert ref() is None
    thread.join(5)
    assert not thread.is_alive() and rt.live()["contexts"] == 0


def _same_layers_other_batch(model: FakeModel, batch: int) -> FakeModel:
    """What weight sharing is for: the same network built for another input shape; its own
    weights are zeros, so results prove the shared ones were used."""
    layers = [Dense(np.zeros_like(d.weight), np.zeros_like(d.bias), d.activation)
              for d in model.layers]  # fmt: skip
    return FakeModel(layers, dtype=model.dtype, batch_sizes=(batch,))


def test_a_session_sharing_weights_allocates_none_and_computes_with_them(rt) -> None:
    model = mlp(batch_sizes=(1,))
    other = _same_layers_other_batch(model, 8)
    with rkrt.Session(model.to_bytes()) as first:
        own = rt.weight_bytes()["allocated"]
        assert own > 0
        second = rkrt.Session(other.to_bytes(), share_weights=first)
        assert rt.last_init_flags() & SHARE_WEIGHT_MEM
        assert rt.weight_bytes() == {"allocated": own, "in_use": own}  # not allocated twice
        x = inputs_for(model, batch=8)[0]
        np.testing.assert_allclose(second.run(x)[0], model.reference(x)[0], **tolerance("float16"))
        with pytest.raises(RuntimeError, match="close them first"):
            first.close()
        assert not first.closed and first.run(x[:1])[0].shape == (1, 3)
        second.close()
        unshared = rkrt.Session(other.to_bytes())  # the control: a second copy
        assert rt.weight_bytes()["allocated"] == 2 * own
        unshared.close()
    assert rt.weight_bytes()["in_use"] == 0


def test_weight_sharing_is_refused_clearly(rt) -> None:
    model = mlp()
    with rkrt.Session(model.to_bytes()) as first:
        different = mlp((4, 50, 3))
        with pytest.raises(rkrt.RKNNError, match="RKNN_ERR_MODEL_INVALID"):
            rkrt.Session(different.to_bytes(), share_weights=first)
        with pytest.raises(TypeError, match="open rkrt.Session"):
            rkrt.Session(model.to_bytes(), share_weights=first.handle)  # type: ignore[arg-type]
    with pytest.raises(rkrt.ClosedError):
        rkrt.Session(model.to_bytes(), share_weights=first)


def test_weight_sharing_with_dynamic_shape_models_is_refused(rt) -> None:
    # The RKNN API user guide (1.5.2, "Dynamic shape input") excludes shared weights there.
    static, dynamic = mlp(batch_sizes=(1,)), mlp(batch_sizes=(1, 8))
    with rkrt.Session(dynamic.to_bytes()) as source:
        with pytest.raises(rkrt.UnsupportedRuntimeError, match="dynamic-shape"):
            rkrt.Session(static.to_bytes(), share_weights=source)
        assert rt.live()["contexts"] == 1
    with rkrt.Session(static.to_bytes()) as source:
        with pytest.raises(rkrt.UnsupportedRuntimeError, match="dynamic-shape"):
            rkrt.Session(dynamic.to_bytes(), share_weights=source)
        assert rt.live()["contexts"] == 1 and not source._sharers
    assert rt.live()["contexts"] == 0


def test_sharing_while_the_source_runs_in_another_thread_is_serialised(rt) -> None:
    model = mlp()
    x = inputs_for(model)[0]
    rt.set_run_delay(1_000)
    with rkrt.Session(model.to_bytes()) as first:
        stop = threading.Event()

        def busy() -> None:
            while not stop.is_set():
                first.run(x)

        t = threading.Thread(target=busy)
        t.start()
        try:
            sharers = [rkrt.Session(model.to_bytes(), share_weights=first) for _ in range(5)]
        finally:
            stop.set()
            t.join()
        for s in sharers:
            s.close()
    assert rt.counter("concurrent") == 0
