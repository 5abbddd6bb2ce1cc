"""The toolkit pipeline's own logic, without rknn-toolkit2: log parsing, output capture,
calibration files and the verification arithmetic (fed by fake simulators)."""

from __future__ import annotations

import ctypes
import logging
import os
import sys

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from emit.converters import lower
from emit.placement import parse_placement
from emit.toolkit import capture_output, relevant_lines, write_calibration_dataset
from emit.verify import (
    Tolerance,
    VerificationError,
    VerificationWarning,
    default_sample,
    enforce,
    measure,
    run_in_batches,
)

_RULE = "D RKNN: [10:00:00.000] " + "-" * 120
_HEADER = (
    "D RKNN: [10:00:00.000] ID   OpType             DataType Target InputShape"
    "                               OutputShape            Cycles(DDR/NPU/Total)    RW(KB)"
    "       FullName        "
)


def _table(batch: int, rows: list[tuple[str, str, str]]) -> str:
    lines = [
        _RULE,
        "D RKNN: [10:00:00.000]                        Network Layer Information Table",
        _RULE,
        _HEADER,
        _RULE,
    ]
    for i, (op, target, name) in enumerate(rows):
        shape_in = "\\" if op == "InputOperator" else f"({batch},4,1,1),(8,4,1,1),(8)"
        lines.append(
            f"D RKNN: [10:00:00.000] {i:<4} {op:<18} FLOAT16  {target:<6} {shape_in:<40} "
            f"({batch},8)                 0/0/0                    0            {op}:{name}"
        )
    lines.append(_RULE)
    return "\n".join(lines)


def test_placement_reads_every_table_and_flags_cpu_compute_layers():
    npu = [
        ("InputOperator", "CPU", "input"),
        ("ConvRelu", "NPU", "l0"),
        ("Reshape", "CPU", "out-rs"),
        ("OutputOperator", "CPU", "output"),
    ]
    fallback = [
        ("InputOperator", "CPU", "input"),
        ("ConvRelu", "CPU", "l0"),
        ("exSoftmax13", "NPU", "sm"),
        ("OutputOperator", "CPU", "output"),
    ]
    log = "I noise\n" + _table(32, fallback) + "\nD RKNN: other\n" + _table(1, npu) + "\nW end"
    placement = parse_placement(log)
    assert sorted(placement.by_batch) == [1, 32]
    assert [la.op_type for la in placement.by_batch[1]] == [op for op, _, _ in npu]
    assert placement.by_batch[1][1].name == "l0" and placement.by_batch[1][1].target == "NPU"
    flagged = placement.cpu_compute_layers()
    assert [(b, la.op_type, la.name) for b, la in flagged] == [(32, "ConvRelu", "l0")]
    assert not placement.all_compute_on_npu
    assert "ConvRelu l0 (batch 32)" in placement.summary()


def test_placement_without_a_table_is_not_all_on_npu():
    placement = parse_placement("I rknn building done.\n")
    assert placement.by_batch == {} and not placement.all_compute_on_npu
    assert "unknown" in placement.summary()


def test_relevant_lines_keep_errors_and_drop_known_noise():
    log = (
        "I fine\nE RKNN: [1] Unkown op target: 0\n\x1b[1;31mE\x1b[0m load_onnx: bad model\n"
        "E load_onnx: Traceback (most recent call last):\nValueError: bad model\n"
        "E load_onnx: bad model\n"
    )
    assert relevant_lines(log) == ["E load_onnx: bad model", "ValueError: bad model"]


def test_capture_output_takes_c_python_and_logger_output(tmp_path):
    sink_path = tmp_path / "log"
    logger = logging.getLogger("rknnLogger")
    handler = logging.StreamHandler(sys.stderr)
    logger.addHandler(handler)
    libc = ctypes.CDLL(None)
    try:
        with open(sink_path, "wb") as sink, capture_output(sink.fileno()):
            libc.printf(b"from C stdio\n")  # buffered by libc: must be flushed in time
            os.write(2, b"from fd 2\n")
            print("from print")
            logger.warning("from the toolkit logger")
    finally:
        logger.removeHandler(handler)
    text = sink_path.read_text()
    for expected in ("from C stdio", "from fd 2", "from print", "from the toolkit logger"):
        assert expected in text
    assert handler.stream is sys.stderr  # restored


def test_calibration_files_hold_every_row_at_the_largest_batch(tmp_path):
    rows = np.arange(70 * 3, dtype=np.float64).reshape(70, 3)
    listing = write_calibration_dataset(rows, tmp_path, 32)
    paths = listing.read_text().split()
    assert len(paths) == 3 and all(os.path.isabs(p) for p in paths)
    arrays = [np.load(p) for p in paths]
    assert all(a.shape == (32, 3) and a.dtype == np.float32 for a in arrays)
    stacked = np.concatenate(arrays)
    np.testing.assert_array_equal(stacked[:70], rows)
    np.testing.assert_array_equal(stacked[70:], rows[:26])  # cycled to fill the last file
    with pytest.raises(ValueError, match="NaN"):
        write_calibration_dataset(np.full((4, 3), np.nan), tmp_path, 2)


def test_run_in_batches_pads_the_tail_and_keeps_order():
    seen = []

    def run(x):
        seen.append(x.shape)
        return x * 2

    x = np.arange(22, dtype=np.float32).reshape(11, 2)
    out = run_in_batches(run, x, 4)
    assert seen == [(4, 2)] * 3
    np.testing.assert_array_equal(out, x * 2)


@pytest.fixture(scope="module")
def iris_logistic():
    X, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=1000).fit(X, y), X


def test_measure_reports_the_error_it_is_fed(iris_logistic):
    model, X = iris_logistic
    spec = lower(model).spec
    x32 = X.astype(np.float32)
    exact = {tuple(r): p for r, p in zip(x32, model.predict_proba(x32))}

    def simulator(x):
        out = np.stack([exact[tuple(r)] for r in x])
        out[:, 0] += 0.003  # a known error
        return out

    tolerance = Tolerance().resolved(None)
    acc = measure(simulator, model, spec, X, batch_sizes=(1, 8), tolerance=tolerance, sample="test")
    assert acc.max_abs_error == pytest.approx(0.003, abs=1e-6)
    assert acc.max_error == acc.max_abs_error  # probabilities are compared as they are
    assert acc.batch_sizes == (1, 8) and acc.n_samples == len(X)
    assert 0.9 < acc.label_agreement <= 1.0 and acc.passed


def test_measure_counts_label_disagreements(iris_logistic):
    model, X = iris_logistic
    swapped = model.predict_proba(X)[:, ::-1]  # every label wrong except ties
    lookup = {tuple(r): p for r, p in zip(X.astype(np.float32), swapped)}
    acc = measure(
        lambda x: np.stack([lookup[tuple(r)] for r in x]),
        model,
        lower(model).spec,
        X,
        batch_sizes=(1,),
        tolerance=Tolerance().resolved("int8"),
        sample="test",
    )
    expected = np.mean(model.classes_[swapped.argmax(1)] == model.predict(X))
    assert acc.label_agreement == pytest.approx(expected)
    assert not acc.passed
    with pytest.raises(VerificationError, match="int8"):
        enforce(acc, "int8")
    warned = Tolerance(warn=True).resolved("int8")
    with pytest.warns(VerificationWarning):
        enforce(type(acc)(**{**acc.__dict__, "tolerance": warned}), "int8")


def test_regression_error_is_relative_to_the_output_scale():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    model = LinearRegression().fit(X, X @ [100.0, -50.0, 10.0] + 500)
    x32 = X.astype(np.float32)
    reference = {tuple(r): v for r, v in zip(x32, model.predict(x32))}
    acc = measure(
        lambda x: np.array([[reference[tuple(r)] + 1.0] for r in x]),
        model,
        lower(model).spec,
        X,
        batch_sizes=(4,),
        tolerance=Tolerance().resolved(None),
        sample="test",
    )
    peak = np.abs(model.predict(X.astype(np.float32))).max()
    assert acc.max_abs_error == pytest.approx(1.0, rel=1e-4)
    assert acc.max_error == pytest.approx(1.0 / peak, rel=1e-4)
    assert acc.label_agreement is None


def test_default_tolerances_are_stricter_for_fp16_than_int8():
    fp16, int8 = Tolerance().resolved(None), Tolerance().resolved("int8")
    assert (fp16.max_error, fp16.min_agreement) == (1e-2, 0.99)
    assert int8.min_agreement == 0.95 and int8.max_error > fp16.max_error
    assert Tolerance(max_error=0.5).resolved(None).max_error == 0.5


def test_default_sample_follows_a_fitted_scaler():
    rng = np.random.default_rng(1)
    X = rng.normal(loc=[100.0, -3.0], scale=[10.0, 0.1], size=(500, 2))
    model = make_pipeline(StandardScaler(), LinearRegression()).fit(X, X[:, 0])
    rows, where = default_sample(model, 2, n_rows=2000)
    assert "StandardScaler" in where
    np.testing.assert_allclose(rows.mean(axis=0), X.mean(axis=0), atol=1.0)
    np.testing.assert_allclose(rows.std(axis=0), X.std(axis=0), rtol=0.1)
    bare_rows, bare_where = default_sample(LinearRegression().fit(X, X[:, 0]), 2)
    assert "standard normal" in bare_where and bare_rows.shape == (256, 2)
