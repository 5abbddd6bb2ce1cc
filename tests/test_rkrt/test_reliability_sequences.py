"""Sequences of calls on one Session: every result right, no returned array ever rewritten.

`Session.run` caches which arrays its C structs point at, to keep the per-call path short.
Single calls cannot show a stale cache; interleavings can (a plain run() after run(out=...),
the same array reused after it was written in place, shape switches between calls). This
test drives random interleavings against the model's reference.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rkrt_support import mlp, tolerance

import rkrt

MODEL = mlp((4, 12, 3), dtype="float32", seed=11, batch_sizes=(1, 2, 5))
STEP = st.tuples(
    st.sampled_from(["run", "run_out", "refill", "float16"]),
    st.integers(0, 2),  # which input array
    st.integers(0, 1),  # which out array
    st.sampled_from(MODEL.batch_sizes),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(STEP, min_size=1, max_size=25), seed=st.integers(0, 2**16))
def test_random_call_sequences_match_the_reference(rt, steps, seed) -> None:
    rng = np.random.default_rng(seed)
    xs = {b: [rng.normal(size=(b, 4)).astype(np.float32) for _ in range(3)]
          for b in MODEL.batch_sizes}  # fmt: skip
    outs = {b: [np.full((b, 3), np.nan, np.float32) for _ in range(2)] for b in MODEL.batch_sizes}
    returned: list[tuple[np.ndarray, np.ndarray]] = []  # (array we were given, its value then)
    with rkrt.Session(MODEL.to_bytes()) as s:
        for action, i, j, batch in steps:
            x = xs[batch][i]
            if action == "refill":  # the caller rewrites an input in place between calls
                x[...] = rng.normal(size=x.shape)
                continue
            if action == "float16":  # another dtype: a fresh array through the slow path
                (y,) = s.run(x.astype(np.float16))
                expected = MODEL.reference(x.astype(np.float16).astype(np.float32))[0]
                np.testing.assert_allclose(y, expected, **tolerance("float16"))
                returned.append((y, y.copy()))
                continue
            if action == "run":
                (y,) = s.run(x)
                returned.append((y, y.copy()))
            else:
                y = outs[batch][j]
                assert s.run(x, out=[y])[0] is y
            np.testing.assert_allclose(y, MODEL.reference(x)[0], **tolerance("float32"))
        for y, value in returned:
            np.testing.assert_array_equal(y, value)
