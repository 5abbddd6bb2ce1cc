"""`python -m emit`: exit codes, the one-line failures, the summary, model loading rules."""

from __future__ import annotations

import fractions
import json
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
import skops.io
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from emit.cli import main
from rkrt.metadata import read_sidecar


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """An iris MLP saved as .pkl and .skops, its data as .npy, and a foreign .skops file."""
    root = tmp_path_factory.mktemp("cli")
    X, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=500, random_state=0).fit(X, y)
    with open(root / "model.pkl", "wb") as f:
        pickle.dump(model, f)
    skops.io.dump(model, root / "model.skops")
    skops.io.dump({"weights": np.ones(3)}, root / "not_a_model.skops")
    # A type skops does not trust and scikit-learn does not define.
    skops.io.dump({"model": model, "extra": fractions.Fraction(1, 3)}, root / "foreign.skops")
    np.save(root / "X.npy", X.astype(np.float32))
    np.save(root / "X1d.npy", X[:, 0])
    return root


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("emit: error: ")
    return lines[0]


def test_help_warns_that_unpickling_runs_code(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert "arbitrary" in out and "code" in out and "trusted-types" in out


def test_missing_model_file_fails_with_one_line(files, tmp_path, capsys):
    code, out, err = _run([files / "absent.pkl", tmp_path / "m.rknn"], capsys)
    assert code == 1 and out == ""
    assert "does not exist" in _one_error_line(err)


def test_unknown_model_suffix_is_refused_rather_than_unpickled(files, tmp_path, capsys):
    renamed = tmp_path / "model.bin"
    renamed.write_bytes((files / "model.pkl").read_bytes())
    code, _, err = _run([renamed, tmp_path / "m.rknn"], capsys)
    assert code == 1
    line = _one_error_line(err)
    assert ".skops" in line and "arbitrary code" in line


def test_untrusted_skops_types_are_refused_and_named(files, tmp_path, capsys):
    code, _, err = _run([files / "foreign.skops", tmp_path / "m.rknn"], capsys)
    assert code == 1
    line = _one_error_line(err)
    assert "not trusted" in line and "fractions.Fraction" in line
    assert not (tmp_path / "m.rknn").exists()


def test_a_non_estimator_is_refused_with_the_supported_list(files, tmp_path, capsys):
    code, _, err = _run([files / "not_a_model.skops", tmp_path / "m.rknn"], capsys)
    assert code == 1
    assert "MLPClassifier" in _one_error_line(err)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--batch-sizes", "1,x"], "--batch-sizes"),
        (["--batch-sizes", "0"], "--batch-sizes"),
        (["--dataset", "X1d.npy", "--quantize", "int8"], "2-D"),
        (["--quantize", "int8"], "calibration"),
    ],
)
def test_invalid_options_fail_with_one_line(files, tmp_path, capsys, extra, expected):
    extra = [str(files / e) if e.endswith(".npy") else e for e in extra]
    code, _, err = _run([files / "model.skops", tmp_path / "m.rknn", *extra], capsys)
    assert code == 1
    assert expected in _one_error_line(err)


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["only-one-argument"])
    assert info.value.code == 2


@pytest.mark.toolkit
def test_unsupported_platform_fails_with_one_line(files, tmp_path, capsys):
    code, _, err = _run(
        [files / "model.skops", tmp_path / "m.rknn", "--target-platform", "rk1234"], capsys
    )
    assert code == 1
    line = _one_error_line(err)
    assert "rk1234" in line and "rk3588" in line


@pytest.mark.toolkit
def test_skops_fp16_conversion_succeeds_with_a_summary(files, tmp_path, capsys):
    out_path = tmp_path / "model.rknn"
    report_path = tmp_path / "report.json"
    code, out, err = _run(
        [
            files / "model.skops",
            out_path,
            "--target-platform",
            "rk3588",
            "--batch-sizes",
            "1,8",
            "--example-input",
            files / "X.npy",
            "--report-json",
            report_path,
        ],
        capsys,
    )
    assert code == 0, err
    assert err == ""
    assert "all 3 compute layers on the NPU" in out and "labels agree" in out
    assert len(out.splitlines()) <= 6
    sidecar = read_sidecar(out_path)
    assert sidecar.batch_sizes == (1, 8) and sidecar.quantization is None
    report = json.loads(report_path.read_text())
    assert report["accuracy"]["passed"] is True and report["cpu_compute_layers"] == []
    assert "Network Layer Information Table" in report["toolkit_log"]


@pytest.mark.toolkit
def test_scirknn_spellings_in_a_subprocess(files, tmp_path):
    """`python -m emit` with scirknn's flags: --quantization uses --example_input to calibrate."""
    out_path = tmp_path / "model_int8.rknn"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "emit",
            str(files / "model.pkl"),
            str(out_path),
            "--target_platform",
            "rk3566",
            "--quantization",
            "--example_input",
            str(files / "X.npy"),
            "--no-verify",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "int8" in result.stdout and "rk3566" in result.stdout
    assert "not verified" in result.stdout
    sidecar = read_sidecar(out_path)
    assert (sidecar.quantization, sidecar.target_platform) == ("int8", "rk3566")
