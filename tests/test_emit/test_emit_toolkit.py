"""Conversions through rknn-toolkit2, checked on its simulator against scikit-learn.

Each model is trained and converted once per module (fixtures), on small data, so the
whole module stays within seconds once the toolkit is imported.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
from sklearn.datasets import (
    load_iris,
    load_wine,
    make_classification,
    make_multilabel_classification,
    make_regression,
)
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import emit
from emit.toolkit import Toolkit, ToolkitError
from rkrt.metadata import ModelMetadata, file_sha256, read_sidecar

pytestmark = pytest.mark.toolkit

FP16_AGREEMENT, FP16_MAX_ERROR = 0.99, 1e-2
INT8_AGREEMENT = 0.95
BATCH_SIZES = (1, 8, 32)


def _fit(estimator, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y)


def _convert(tmp_path_factory, name, estimator, X, **kwargs):
    path = tmp_path_factory.mktemp(name) / f"{name}.rknn"
    report = emit.convert(estimator, path, "rk3588", example_input=X, **kwargs)
    return estimator, X, report


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def iris_mlp(iris):
    X, y = iris
    return _fit(MLPClassifier(hidden_layer_sizes=(16,), max_iter=2000, random_state=0), X, y)


@pytest.fixture(scope="module")
def iris_fp16(tmp_path_factory, iris, iris_mlp):
    return _convert(tmp_path_factory, "iris_fp16", iris_mlp, iris[0], batch_sizes=BATCH_SIZES)


@pytest.fixture(scope="module")
def iris_int8(tmp_path_factory, iris, iris_mlp):
    X = iris[0]
    return _convert(
        tmp_path_factory,
        "iris_int8",
        iris_mlp,
        X,
        quantize="int8",
        dataset=X,
        batch_sizes=BATCH_SIZES,
    )


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    X, y = make_classification(300, 8, n_informative=5, random_state=1)
    model = _fit(MLPClassifier(hidden_layer_sizes=(16,), max_iter=1000, random_state=0), X, y)
    return _convert(tmp_path_factory, "binary", model, X.astype(np.float32))


@pytest.fixture(scope="module")
def multilabel(tmp_path_factory):
    X, Y = make_multilabel_classification(300, 10, n_classes=4, random_state=2)
    X = X / X.max()
    mlp = MLPClassifier(hidden_layer_sizes=(24,), activation="tanh", max_iter=1000, random_state=0)
    model = _fit(mlp, X, Y)
    return _convert(tmp_path_factory, "multilabel", model, X.astype(np.float32))


@pytest.fixture(scope="module")
def regressor(tmp_path_factory):
    X, Y = make_regression(300, 8, n_targets=3, noise=1.0, random_state=3)
    model = _fit(MLPRegressor(hidden_layer_sizes=(32,), max_iter=1500, random_state=0), X, Y)
    return _convert(tmp_path_factory, "regressor", model, X.astype(np.float32))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    X, y = load_wine(return_X_y=True)
    mlp = MLPClassifier(
        hidden_layer_sizes=(16,), activation="logistic", max_iter=2000, random_state=0
    )
    model = make_pipeline(StandardScaler(), PCA(6, random_state=0), mlp)
    return _convert(tmp_path_factory, "pipeline", _fit(model, X, y), X.astype(np.float32))


@pytest.fixture(scope="module")
def logistic(tmp_path_factory, iris):
    X, y = iris
    return _convert(tmp_path_factory, "logistic", _fit(LogisticRegression(max_iter=1000), X, y), X)


def _labels_from_outputs(estimator, outputs, task):
    if task == "multilabel":
        return (outputs > 0.5).astype(int)
    return np.asarray(estimator.classes_)[outputs.argmax(axis=1)]


def _assert_fp16_classifier(report, estimator, X):
    acc = report.accuracy
    assert acc.n_samples == len(X)
    assert acc.max_error <= FP16_MAX_ERROR
    assert acc.label_agreement >= FP16_AGREEMENT
    assert acc.passed


def _assert_all_compute_on_npu(report, batch_sizes=(1,)):
    placement = report.placement
    assert sorted(placement.by_batch) == sorted(batch_sizes)
    for layers in placement.by_batch.values():
        compute = [layer for layer in layers if layer.is_compute]
        # Every model has at least one dense layer, which becomes an NPU Conv.
        assert any(layer.op_type.startswith("Conv") for layer in compute)
        assert {layer.target for layer in compute} == {"NPU"}, layers
    assert placement.cpu_compute_layers() == []


# --- the models the issue names --------------------------------------------------------
def test_iris_mlp_fp16(iris_fp16):
    estimator, X, report = iris_fp16
    _assert_fp16_classifier(report, estimator, X)
    assert report.accuracy.batch_sizes == BATCH_SIZES
    _assert_all_compute_on_npu(report, BATCH_SIZES)


def test_iris_mlp_int8(iris_int8):
    estimator, X, report = iris_int8
    assert report.metadata.quantization == "int8"
    assert report.accuracy.label_agreement >= INT8_AGREEMENT
    _assert_all_compute_on_npu(report, BATCH_SIZES)
    # int8 layers really are int8 in the build (not an fp16 build mislabelled).
    dtypes = {la.dtype for la in report.placement.by_batch[1] if la.op_type.startswith("Conv")}
    assert dtypes == {"INT8"}


def test_binary_classifier(binary):
    estimator, X, report = binary
    assert report.metadata.task == "classifier" and len(report.metadata.classes) == 2
    _assert_fp16_classifier(report, estimator, X)
    _assert_all_compute_on_npu(report)


def test_multilabel_classifier(multilabel):
    estimator, X, report = multilabel
    assert report.metadata.task == "multilabel"
    _assert_fp16_classifier(report, estimator, X)
    _assert_all_compute_on_npu(report)


def test_multi_output_regressor(regressor):
    estimator, X, report = regressor
    assert report.metadata.task == "regressor" and report.metadata.outputs == "values"
    acc = report.accuracy
    assert acc.label_agreement is None  # nothing to agree on
    # Values are compared relative to the largest predicted magnitude.
    scale = np.abs(estimator.predict(X)).max()
    assert acc.max_error == pytest.approx(acc.max_abs_error / scale, rel=1e-3)
    assert acc.max_error <= FP16_MAX_ERROR
    _assert_all_compute_on_npu(report)


def test_scaler_pca_mlp_pipeline(pipeline):
    estimator, X, report = pipeline
    assert report.metadata.estimator == "Pipeline(StandardScaler, PCA, MLPClassifier)"
    _assert_fp16_classifier(report, estimator, X)
    _assert_all_compute_on_npu(report)


def test_logistic_regression(logistic):
    estimator, X, report = logistic
    _assert_fp16_classifier(report, estimator, X)
    _assert_all_compute_on_npu(report)


# --- several batch sizes in one model ---------------------------------------------------
def test_one_model_runs_at_each_batch_size(tmp_path, iris, iris_mlp):
    """Independent of emit.verify: the simulator output at 1, 8 and 32 rows vs scikit-learn."""
    X, _ = iris
    expected = iris_mlp.predict_proba(X)
    onnx_path = tmp_path / "iris.onnx"
    onnx_path.write_bytes(emit.to_onnx(iris_mlp, batch_size=max(BATCH_SIZES)).SerializeToString())
    with Toolkit("rk3588") as toolkit:
        toolkit.build(onnx_path, batch_sizes=BATCH_SIZES, n_features=4)
        for batch in BATCH_SIZES:
            rows = X[:batch]
            (out,) = toolkit.infer(np.ascontiguousarray(rows))
            assert out.shape == (batch, 3)
            assert np.abs(out - expected[:batch]).max() <= FP16_MAX_ERROR
            assert (out.argmax(1) == iris_mlp.predict(rows)).all()
        with pytest.raises(ValueError, match="batch in"):
            toolkit.infer(np.ascontiguousarray(X[:5]))


# --- files written ---------------------------------------------------------------------
def test_sidecar_and_custom_string_describe_the_model(iris_int8):
    estimator, _, report = iris_int8
    sidecar = read_sidecar(report.path)  # also checks the recorded sha256
    assert sidecar.sha256 == file_sha256(report.path) == report.metadata.sha256
    assert sidecar.classes == tuple(estimator.classes_.tolist())
    assert sidecar.batch_sizes == BATCH_SIZES
    assert sidecar.quantization == "int8" and sidecar.target_platform == "rk3588"
    assert sidecar.versions["rknn-toolkit2"] == emit.toolkit.toolkit_version()
    assert sidecar.verification["label_agreement"] == report.accuracy.label_agreement
    # The .rknn carries the essentials itself, for boards without the sidecar.
    with open(report.path, "rb") as f:
        blob = f.read().decode("latin-1")
    start = blob.index('{"format":"rkrt-model"')
    text, _ = json.JSONDecoder().raw_decode(blob[start:])
    embedded = ModelMetadata.from_custom_string(json.dumps(text))
    assert (embedded.task, embedded.classes, embedded.n_features_in) == ("classifier", (0, 1, 2), 4)


def test_report_sizes_timings_and_log(iris_fp16):
    _, _, report = iris_fp16
    assert report.sizes["rknn"] == os.path.getsize(report.path)
    assert report.sizes["onnx"] > 0
    assert report.timings["total"] >= report.timings["build"] > 0
    assert "Network Layer Information Table" in report.toolkit_log
    assert "\x1b[" not in report.toolkit_log
    json.dumps(report.to_dict())  # the CLI's --report-json relies on this


# --- verification failures and toolkit failures ------------------------------------------
def test_failed_verification_raises_and_writes_nothing(tmp_path, iris, iris_mlp):
    path = tmp_path / "strict.rknn"
    tolerance = emit.Tolerance(max_error=1e-7)  # fp16 cannot be this close
    with pytest.raises(emit.VerificationError, match="max \\|dp\\|"):
        emit.convert(iris_mlp, path, example_input=iris[0], verify=tolerance)
    assert not path.exists() and not (tmp_path / "strict.rknn.json").exists()


def test_failed_verification_can_warn_instead(tmp_path, iris, iris_mlp):
    path = tmp_path / "lenient.rknn"
    tolerance = emit.Tolerance(max_error=1e-7, warn=True)
    with pytest.warns(emit.VerificationWarning):
        report = emit.convert(iris_mlp, path, example_input=iris[0], verify=tolerance)
    assert not report.accuracy.passed
    assert path.exists() and read_sidecar(path).verification["passed"] is False


def test_no_verify_builds_without_simulator(tmp_path, iris_mlp):
    report = emit.convert(iris_mlp, tmp_path / "m.rknn", verify=False)
    assert report.accuracy is None and read_sidecar(report.path).verification is None
    assert "verify" not in report.timings


def test_conversion_leaves_nothing_in_the_working_directory(tmp_path, iris_mlp, monkeypatch):
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    emit.convert(iris_mlp, "relative.rknn", verify=False)
    assert sorted(p.name for p in workdir.iterdir()) == ["relative.rknn", "relative.rknn.json"]


def test_toolkit_failure_carries_its_log_lines(tmp_path):
    bogus = tmp_path / "broken.onnx"
    bogus.write_bytes(b"not an onnx model")
    with Toolkit("rk3588") as toolkit, pytest.raises(ToolkitError) as info:
        toolkit.build(bogus, batch_sizes=(1,), n_features=4)
    assert info.value.step == "load_onnx"
    assert info.value.log_lines and all("\x1b[" not in line for line in info.value.log_lines)
    assert info.value.reason in str(info.value)


def test_unsupported_target_platform_lists_the_supported_ones(tmp_path, iris_mlp):
    with pytest.raises(ValueError, match="rk3588") as info:
        emit.convert(iris_mlp, tmp_path / "m.rknn", "rk9999")
    assert "rk9999" in str(info.value) and "rv1106" in str(info.value)
    assert set(emit.supported_platforms()) >= {"rk3566", "rk3568", "rk3588", "rv1106"}


def test_conversion_is_quiet(tmp_path, iris_mlp, capfd):
    capfd.readouterr()
    emit.convert(iris_mlp, tmp_path / "quiet.rknn", verify=False)
    out, err = capfd.readouterr()
    assert "RKNN" not in out + err and "rknn" not in out + err.replace("quiet.rknn", "")


def test_large_example_input_is_subsampled_evenly(tmp_path, iris, iris_mlp):
    X = np.tile(iris[0], (10, 1))  # 1500 rows
    report = emit.convert(iris_mlp, tmp_path / "m.rknn", example_input=X, batch_sizes=(32,))
    assert report.accuracy.n_samples == 1024
    assert "1024 of 1500 rows" in report.accuracy.sample


def test_missing_output_directory_fails_before_building(tmp_path, iris_mlp):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        emit.convert(iris_mlp, tmp_path / "absent" / "m.rknn")


def test_verification_error_carries_the_figures(tmp_path, iris, iris_mlp):
    with pytest.raises(emit.VerificationError) as info:
        emit.convert(
            iris_mlp,
            tmp_path / "m.rknn",
            example_input=iris[0],
            verify=emit.Tolerance(min_agreement=1.01),
        )
    assert info.value.accuracy.label_agreement >= FP16_AGREEMENT
    assert info.value.accuracy.max_error <= FP16_MAX_ERROR
