"""rkrt.sklearn.load(path, cores=...): large inputs over every NPU core, results of one core."""

from __future__ import annotations

import time

import numpy as np
import pytest
from test_sklearn import convert, fitted

import rkrt.sklearn as rks

CORES = ["CORE_0", "CORE_1", "CORE_2"]


@pytest.mark.parametrize("name", ["multiclass_str", "regressor_multi", "svc_multiclass"])
def test_all_cores_give_the_results_of_one(rt, rk3588, tmp_path, name) -> None:
    est, X = fitted(name)
    path = convert(est, tmp_path / "m.rknn", dtype="float16")
    rng = np.random.default_rng(0)
    big = np.asarray(X, dtype=np.float64)[rng.integers(0, len(X), 1234)]
    rt.set_run_delay(300)  # long enough for runs to overlap
    with rks.load(path) as one, rks.load(path, cores=CORES) as many:
        methods = ["predict"] + [m for m in ("predict_proba", "decision_function")
                                 if hasattr(one, m)]  # fmt: skip
        for method in methods:
            np.testing.assert_array_equal(getattr(many, method)(big), getattr(one, method)(big))
        for rows in (0, 1, 33):  # fewer rows than contexts, and a zero-padded tail
            np.testing.assert_array_equal(many.predict(big[:rows]), one.predict(big[:rows]))
    assert rt.max_parallel_runs() >= 2 and rt.counter("concurrent") == 0


def test_all_cores_run_the_chunks_in_parallel(rt, rk3588, tmp_path) -> None:
    est, X = fitted("multiclass_str")
    path = convert(est, tmp_path / "m.rknn", dtype="float16")
    big = np.tile(np.asarray(X, dtype=np.float64), (4, 1))  # 600 rows: 19 runs of 32
    rt.set_run_delay(4_000)
    took = {}
    with rks.load(path) as one, rks.load(path, cores=CORES) as many:
        for label, clf in (("one", one), ("many", many)):
            clf.predict(big[:40])  # shapes switched
            started = time.perf_counter()
            clf.predict(big)
            took[label] = time.perf_counter() - started
    assert took["one"] / took["many"] > 1.5  # 3 at best; generous on a shared machine


def test_cores_and_core_mask_are_one_or_the_other(rt, rk3588, tmp_path) -> None:
    est, _ = fitted("regressor")
    path = convert(est, tmp_path / "m.rknn")
    with pytest.raises(ValueError, match="not both"):
        rks.load(path, core_mask="CORE_0", cores=CORES)
    with rks.MLPRegressor(path, cores=CORES[:2]) as reg:
        assert reg.predict(np.zeros((3, 5))).shape == (3,)
