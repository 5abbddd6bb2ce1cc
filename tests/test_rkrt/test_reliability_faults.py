"""Fault sweep: every runtime call rkrt makes, failing with every error code, at every point.

For each scenario (open, run, zero-copy bind, bound run, dup, pool start, close) a clean run
first records how often each rknn_* function is called; then every (function, nth call, code)
is injected in turn. Each time rkrt must raise RKNNError naming that function and code (never
crash, never return a result), the test double must count no misuse, nothing may stay live
after close, and the session must either still compute correct results or refuse further use
with a clear error.

The only documented leftovers are those of a failed free (injected faults fire before the
call does anything): a refused rknn_destroy leaves its context live, a refused
rknn_destroy_mem its memory block. rkrt never retries a free (a retry after a real partial
free would be a double free), so those are the runtime's to leak, and the close sweep counts
them exactly, on a private copy of the double.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest
from fake_rknnrt import FakeModel, FakeRuntime
from rkrt_support import NO_LEAKS, inputs_for, mlp, tolerance

import rkrt
from rkrt import ClosedError, CoreMask, RKNNError
from rkrt._ffi import DEFINES
from rkrt.errors import ERROR_NAMES
from rkrt.library import load

UNKNOWN_CODE = -99
CODES = tuple(sorted(ERROR_NAMES, reverse=True)) + (UNKNOWN_CODE,)
MALLOC_FAIL = DEFINES["RKNN_ERR_MALLOC_FAIL"]
MODEL_INVALID = DEFINES["RKNN_ERR_MODEL_INVALID"]
# Functions returning a pointer fail with NULL; rkrt reports that as an allocation failure.
POINTER_FUNCTIONS = {"rknn_create_mem"}

STATIC = mlp((5, 12, 3), dtype="float16", inputs=[("a", 2), ("b", 3)],
             outputs=[("p", 2), ("q", 1)])  # fmt: skip
DYNAMIC = mlp((4, 8, 3), dtype="float32", seed=3, batch_sizes=(1, 4))
MODELS = {"static": STATIC, "dynamic": DYNAMIC}


def test_the_sweep_covers_every_error_code_of_the_header() -> None:
    assert CODES[:13] == tuple(range(-1, -14, -1)) and UNKNOWN_CODE not in ERROR_NAMES


# ---- checks shared by every scenario ----------------------------------------------------


def _assert_outputs(ys: list[np.ndarray], model: FakeModel, xs: list[np.ndarray]) -> None:
    for y, ref in zip(ys, model.reference(*xs)):
        np.testing.assert_allclose(y, ref, **tolerance(model.dtype))


def run_correctly(session: rkrt.Session, model: FakeModel, st: dict[str, Any] = {}) -> None:  # noqa: B006
    """Every accepted batch size computes what the reference computes.

    After an absorbed MODEL_INVALID from the dynamic-range query (see sweep()) the runtime
    has said "static model": the first shape is served and the others refused clearly.
    """
    for batch in model.batch_sizes:
        xs = inputs_for(model, batch, seed=batch)
        if batch != model.batch and st.get("absorbed") and not session.is_dynamic:
            with pytest.raises(rkrt.ShapeError, match="accepts"):
                session.run(*xs)
        else:
            _assert_outputs(session.run(*xs), model, xs)


def run_bound_correctly(binding: rkrt.IOBinding, model: FakeModel) -> None:
    for batch in model.batch_sizes:
        if len(model.batch_sizes) > 1:
            binding.set_input_shapes(*[(batch, w) for _, w in model.inputs])
        xs = inputs_for(model, batch, seed=batch)
        for buf, x in zip(binding.inputs, xs):
            buf[...] = x
        binding.run()
        _assert_outputs([np.array(o) for o in binding.outputs], model, xs)


# ---- scenarios ----------------------------------------------------------------------------


@dataclass
class Scenario:
    """prepare() builds the state; act() is where faults are injected; prove() shows the
    state is still usable (or refuses clearly) afterwards; close() frees everything."""

    prepare: Callable[[], dict[str, Any]]
    act: Callable[[dict[str, Any]], None]
    prove: Callable[[dict[str, Any]], None]
    close: Callable[[dict[str, Any]], None]


def _open(model: FakeModel, **options: Any) -> rkrt.Session:
    return rkrt.Session(model.to_bytes(), soc="rk3588", **options)


def _close_all(st: dict[str, Any]) -> None:
    for key in ("b", "d", "s", "p"):
        if key in st:
            st[key].close()


def open_scenario(model: FakeModel) -> Scenario:
    def act(st: dict[str, Any]) -> None:
        st["s"] = _open(model, core_mask=CoreMask.CORE_1)

    def prove(st: dict[str, Any]) -> None:
        if "s" in st:
            run_correctly(st["s"], model, st)
        else:  # the failure left nothing half-open behind: a new open works
            with _open(model, core_mask=CoreMask.CORE_1) as s:
                run_correctly(s, model)

    return Scenario(dict, act, prove, _close_all)


def run_scenario(model: FakeModel) -> Scenario:
    def act(st: dict[str, Any]) -> None:
        # The last batch size: a dynamic model switches shapes inside this run.
        xs = inputs_for(model, model.batch_sizes[-1])
        _assert_outputs(st["s"].run(*xs), model, xs)

    return Scenario(
        lambda: {"s": _open(model)}, act, lambda st: run_correctly(st["s"], model), _close_all
    )


def bind_scenario(model: FakeModel) -> Scenario:
    def act(st: dict[str, Any]) -> None:
        st["b"] = st["s"].bind()

    def prove(st: dict[str, Any]) -> None:
        s = st["s"]
        # Whatever the bind did to the context, the general API is refused, not mixed.
        with pytest.raises(RuntimeError, match="zero-copy"):
            s.run(*inputs_for(model))
        if "b" not in st:
            st["b"] = s.bind()
        run_bound_correctly(st["b"], model)

    return Scenario(lambda: {"s": _open(model)}, act, prove, _close_all)


def bound_run_scenario(model: FakeModel) -> Scenario:
    def prepare() -> dict[str, Any]:
        s = _open(model)
        return {"s": s, "b": s.bind()}

    def act(st: dict[str, Any]) -> None:
        run_bound_correctly(st["b"], model)

    def prove(st: dict[str, Any]) -> None:
        b = st["b"]
        if not b.outputs:  # a failed shape switch: refused until a switch succeeds
            with pytest.raises(RuntimeError, match="set_input_shapes"):
                b.run()
            run_bound_correctly(b, model)
        # As a caller would retry: the same views, no shape switch.
        xs = [np.random.default_rng(7).normal(size=buf.shape) for buf in b.inputs]
        for buf, x in zip(b.inputs, xs):
            buf[...] = x
        b.run()
        _assert_outputs([np.array(o) for o in b.outputs], model, xs)
        run_bound_correctly(b, model)

    return Scenario(prepare, act, prove, _close_all)


def dup_scenario(model: FakeModel) -> Scenario:
    def act(st: dict[str, Any]) -> None:
        st["d"] = st["s"].dup(core_mask=CoreMask.CORE_2)

    def prove(st: dict[str, Any]) -> None:
        run_correctly(st["s"], model)
        if "d" in st:
            run_correctly(st["d"], model, st)

    return Scenario(lambda: {"s": _open(model, core_mask="1")}, act, prove, _close_all)


def pool_scenario(model: FakeModel) -> Scenario:
    def act(st: dict[str, Any]) -> None:
        st["p"] = rkrt.Pool(model.to_bytes(), soc="rk3588")

    def prove(st: dict[str, Any]) -> None:
        if "p" in st:
            for s in st["p"].sessions:
                run_correctly(s, model, st)
        else:
            with rkrt.Pool(model.to_bytes(), soc="rk3588") as p:
                run_correctly(p.sessions[-1], model)

    return Scenario(dict, act, prove, _close_all)


SCENARIOS: dict[str, Callable[[FakeModel], Scenario]] = {
    "open": open_scenario,
    "run": run_scenario,
    "bind": bind_scenario,
    "bound_run": bound_run_scenario,
    "dup": dup_scenario,
    "pool_start": pool_scenario,
}
# Refused before any runtime call, so there is nothing to sweep: the runtime cannot duplicate
# a dynamic-shape model's context (a Pool of one opens its contexts one by one instead).
REFUSED = {("dup", "dynamic")}


# ---- the sweep ------------------------------------------------------------------------------


@dataclass
class Tally:
    injected: int = 0
    raised: int = 0
    absorbed: int = 0
    per_function: Counter = field(default_factory=Counter)


def call_points(runtime: FakeRuntime, scenario: Scenario) -> list[tuple[str, int]]:
    """(function, nth) for every runtime call act() makes, from one clean pass."""
    st = scenario.prepare()
    runtime.reset()
    scenario.act(st)
    counts = {fn: runtime.calls(fn) for fn in runtime.functions}
    scenario.close(st)
    return [(fn, nth) for fn, k in counts.items() for nth in range(1, k + 1)]


def expect_rknn_error(exc: RKNNError, function: str, code: int) -> None:
    assert exc.function == function
    assert exc.code == (MALLOC_FAIL if function in POINTER_FUNCTIONS else code)
    assert f"{function}()" in str(exc) and str(exc.code) in str(exc)
    if exc.code not in ERROR_NAMES:
        assert exc.symbol == "unknown"


def sweep(runtime: FakeRuntime, scenario: Scenario) -> Tally:
    tally = Tally()
    points = call_points(runtime, scenario)
    assert points, "the scenario makes no runtime call"
    for function, nth in points:
        for code in CODES:
            where = f"{function} call #{nth} failing with {code}"
            st = scenario.prepare()
            runtime.reset()
            runtime.inject(function, nth=nth, code=code)
            try:
                scenario.act(st)
            except RKNNError as exc:
                expect_rknn_error(exc, function, code)
                tally.raised += 1
            else:
                # The one failure rkrt absorbs by design: a static model answers the
                # dynamic-range query with MODEL_INVALID, so that answer means "static".
                assert (function, code) == ("rknn_query", MODEL_INVALID), f"{where}: no error"
                st["absorbed"] = True
                tally.absorbed += 1
            assert runtime.calls(function) >= nth, f"{where}: the fault never fired"
            tally.injected += 1
            tally.per_function[function] += 1
            try:
                scenario.prove(st)
            except Exception as exc:
                raise AssertionError(f"{where}: unusable afterwards: {exc!r}") from exc
            scenario.close(st)  # no gc.collect(): every path must free deterministically
            assert runtime.counter("unsafe") == 0, f"{where}: misuse {runtime.counters()}"
            assert runtime.live() == NO_LEAKS, f"{where}: left {runtime.live()}"
    return tally


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("scenario_name", SCENARIOS)
def test_fault_sweep(rt, scenario_name: str, model_name: str) -> None:
    model = MODELS[model_name]
    if (scenario_name, model_name) in REFUSED:
        scenario = SCENARIOS[scenario_name](model)
        st = scenario.prepare()
        with pytest.raises(rkrt.UnsupportedRuntimeError, match="dynamic-shape"):
            scenario.act(st)
        scenario.close(st)
        assert rt.calls("rknn_dup_context") == 0
        return
    tally = sweep(rt, SCENARIOS[scenario_name](model))
    assert tally.injected == tally.raised + tally.absorbed
    assert tally.injected >= len(CODES)
    print(f"{scenario_name}/{model_name}: {tally.injected} faults injected, "
          f"{tally.raised} raised, {dict(tally.per_function)}")  # fmt: skip


# ---- close: where the runtime's own free fails ------------------------------------------------


def _live_handles(runtime: FakeRuntime, handles: list[int]) -> list[int]:
    alive = []
    for h in handles:
        try:
            runtime.core_mask(h)
        except ValueError:
            continue
        alive.append(h)
    return alive


def _close_states() -> dict[str, Callable[[], dict[str, Any]]]:
    def general() -> dict[str, Any]:
        s = _open(STATIC)
        run_correctly(s, STATIC)
        return {"s": s}

    def bound() -> dict[str, Any]:
        s = _open(DYNAMIC)
        b = s.bind()
        run_bound_correctly(b, DYNAMIC)
        return {"s": s, "b": b}

    def pool() -> dict[str, Any]:
        return {"p": rkrt.Pool(STATIC.to_bytes(), soc="rk3588")}

    return {"session": general, "bound_session": bound, "binding_only": bound, "pool": pool}


def _sessions(st: dict[str, Any]) -> list[rkrt.Session]:
    return list(st["p"].sessions) if "p" in st else [st["s"]]


@pytest.mark.parametrize("state", _close_states())
def test_close_fault_sweep(private_rt: FakeRuntime, state: str) -> None:
    prepare = _close_states()[state]
    raw = load(private_rt.path).lib

    def act(st: dict[str, Any]) -> None:
        if state == "binding_only":
            st["b"].close()
        else:
            (st["p"] if "p" in st else st["s"]).close()

    scenario = Scenario(prepare, act, lambda st: None, _close_all)
    stuck_mems = 0
    injected = 0
    for function, nth in call_points(private_rt, scenario):
        for code in CODES:
            where = f"{state}: {function} call #{nth} failing with {code}"
            st = prepare()
            handles = [int(s._context.handle) for s in _sessions(st)]
            private_rt.reset()
            private_rt.inject(function, nth=nth, code=code)
            with pytest.raises(RKNNError) as info:
                act(st)
            expect_rknn_error(info.value, function, code)
            injected += 1
            # The failed free is reported, but everything else was still freed ...
            if state == "binding_only":
                assert st["b"].closed
                with st["s"].bind() as again:  # the context itself is intact
                    run_bound_correctly(again, DYNAMIC)
            st.pop("b", None)
            _close_all(st)
            for s in _sessions(st):
                assert s.closed
                with pytest.raises(ClosedError, match="closed"):
                    s.run(*inputs_for(STATIC))
            live = private_rt.live()
            # ... and exactly the block or context whose free was refused stays live.
            if function == "rknn_destroy":
                alive = _live_handles(private_rt, handles)
                assert len(alive) == 1 and live["contexts"] == 1, where
                assert raw.rknn_destroy(alive[0]) == 0  # a retry frees it: nothing else leaked
            elif function == "rknn_destroy_mem":
                stuck_mems += 1
            else:
                raise AssertionError(f"{where}: close called an unexpected function")
            assert private_rt.live() == {**NO_LEAKS, "mems": stuck_mems}, where
            assert private_rt.counter("unsafe") == 0, where
    print(f"close/{state}: {injected} faults injected, {stuck_mems} refused frees of mems")
    assert injected >= len(CODES)


def test_injected_null_from_create_mem_is_an_allocation_error(rt) -> None:
    with _open(STATIC) as s:
        rt.inject("rknn_create_mem", nth=2)
        with pytest.raises(RKNNError, match="rknn_create_mem.*RKNN_ERR_MALLOC_FAIL"):
            s.bind()
    # The binding freed the first block before raising: the rt fixture checks nothing is live.
