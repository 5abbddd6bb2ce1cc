"""End-to-end demo: scikit-learn models converted for a Rockchip NPU, and proof they still work.

Steps (each a function, run in order by `main`):
1. train an MLPClassifier on scikit-learn's digits and an MLPRegressor on its diabetes data;
2. convert each with emit, in fp16 and int8, into one model accepting batch sizes 1, 8 and 32
   (files under .cache/demo/);
3. report, per model: accuracy against scikit-learn on held-out rows (run on rknn-toolkit2's
   simulator at every batch size) and where each layer runs (NPU or CPU);
4. run the same models through `rkrt.sklearn` (the board-side API) on the project's
   test-double librknnrt, since this machine has no NPU: an EMULATED runtime that computes
   the same dense layers in C, in fp16 or int8, from a twin of each model in its own file
   format (it cannot read .rknn files), and compare the predictions with scikit-learn.

Run with `make demo`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List

import numpy as np
from sklearn.datasets import load_diabetes, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import emit
import rkrt
from emit.converters import lower
from rkrt import sklearn as board
from rkrt.metadata import write_sidecar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from fake_rknnrt import Dense, FakeModel, build_library  # noqa: E402  (the test double)

OUT_DIR = Path(__file__).resolve().parents[1] / ".cache" / "demo"
BATCH_SIZES = (1, 8, 32)
PRECISIONS = (None, "int8")  # fp16, then int8


@dataclass
class Trained:
    name: str
    estimator: Any
    X_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    score: str  # scikit-learn's own held-out score, for context


@dataclass
class Converted:
    model: Trained
    precision: str
    report: emit.ConversionReport


def train_models() -> List[Trained]:
    """Step 1: two small models on scikit-learn's bundled data sets (a few seconds)."""
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    digits = MLPClassifier(hidden_layer_sizes=(64,), max_iter=300, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        digits.fit(X_train, y_train)
    digits_score = f"test accuracy {digits.score(X_test, y_test):.1%}"

    X, y = load_diabetes(return_X_y=True)
    X_train_d, X_test_d, y_train_d, y_test_d = train_test_split(
        X, y, test_size=0.25, random_state=0
    )
    # 442 noisy rows: a small, strongly regularised network generalises best.
    diabetes = make_pipeline(
        StandardScaler(),
        MLPRegressor(
            hidden_layer_sizes=(8,), solver="lbfgs", alpha=30.0, max_iter=300, random_state=0
        ),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        diabetes.fit(X_train_d, y_train_d)
    diabetes_score = f"test R^2 {diabetes.score(X_test_d, y_test_d):.2f}"
    return [
        Trained("digits", digits, X_train, X_test, y_test, digits_score),
        Trained("diabetes", diabetes, X_train_d, X_test_d, y_test_d, diabetes_score),
    ]


def convert_models(models: List[Trained], out_dir: Path = OUT_DIR) -> List[Converted]:
    """Step 2: each model in fp16 and int8, batch sizes 1/8/32, verified on the simulator."""
    out_dir.mkdir(parents=True, exist_ok=True)
    converted = []
    for model in models:
        for quantize in PRECISIONS:
            precision = quantize or "fp16"
            report = emit.convert(
                model.estimator,
                out_dir / f"{model.name}_{precision}.rknn",
                "rk3588",
                quantize=quantize,
                dataset=model.X_train if quantize else None,
                batch_sizes=BATCH_SIZES,
                example_input=model.X_test,
            )
            converted.append(Converted(model, precision, report))
    return converted


def print_report(converted: List[Converted]) -> None:
    """Step 3: accuracy against scikit-learn and NPU placement, per converted model."""
    print("\n== Converted models (rknn-toolkit2 simulator vs scikit-learn, held-out rows) ==")
    for item in converted:
        report, acc = item.report, item.report.accuracy
        print(f"\n{item.model.name} {item.precision}  ->  {report.path}")
        print(f"  estimator:  {report.metadata.estimator} ({item.model.score} in scikit-learn)")
        print(f"  accuracy:   {acc.summary()}")
        print(
            f"  files:      {report.sizes['rknn'] / 1024:.0f} KiB .rknn + sidecar "
            f"{Path(report.sidecar_path).name}; converted in {report.timings['total']:.2f} s"
        )
        print(f"  placement:  {report.placement.summary()}")
        layers = report.placement.by_batch[max(report.placement.by_batch)]
        table = "  ".join(f"{la.op_type}@{la.target}" for la in layers)
        print(f"              batch {max(report.placement.by_batch)}: {table}")
    failed = [c for c in converted if not c.report.placement.all_compute_on_npu]
    print(
        "\nEvery compute layer of every model runs on the NPU."
        if not failed
        else f"\n{len(failed)} model(s) have compute layers on the CPU (see above)."
    )


def _int8_quant(values: np.ndarray) -> tuple[float, int]:
    """Asymmetric int8 parameters covering `values`, as a calibrated int8 build has."""
    low, high = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
    scale = max(high - low, 1e-6) / 255.0
    return scale, int(round(-128 - low / scale))


def emulated_twin(item: Converted, out_dir: Path = OUT_DIR) -> Path:
    """The converted model's layers in the test double's format, with the same metadata."""
    estimator, metadata = item.model.estimator, item.report.metadata
    network = lower(estimator).astype(np.float32)
    layers = [Dense(layer.weight, layer.bias, layer.activation) for layer in network.layers]
    quant = {}
    if item.precision == "int8":
        outputs = emit.reference_outputs(estimator, item.model.X_train)
        quant = {
            "input_quant": [_int8_quant(item.model.X_train)],
            "output_quant": [_int8_quant(outputs)],
        }
    path = out_dir / f"{item.model.name}_{item.precision}.emulated.model"
    FakeModel(
        layers,
        dtype="float16" if item.precision == "fp16" else "int8",
        batch_sizes=metadata.batch_sizes,
        custom_string=metadata.to_custom_string(),
        **quant,
    ).save(path)
    write_sidecar(path, dataclasses.replace(metadata, sha256=None))
    return path


def run_on_emulated_board(converted: List[Converted]) -> None:
    """Step 4: rkrt.sklearn on the test-double runtime, predictions against scikit-learn."""
    os.environ["RKRT_LIBRARY"] = str(build_library())
    print("\n== On the board API, EMULATED runtime (test-double librknnrt, no NPU here) ==")
    for item in converted:
        estimator, X = item.model.estimator, item.model.X_test
        with board.load(emulated_twin(item)) as model:
            predicted = model.predict(X)
            one_by_one = np.concatenate([model.predict(X[i : i + 1]) for i in range(len(X))])
        expected = estimator.predict(X)
        same_chunked = bool(np.array_equal(predicted, one_by_one))
        name = f"{item.model.name} {item.precision}"
        if model.metadata.task == "regressor":
            scale = float(np.abs(expected).max())
            error = float(np.abs(predicted - expected).max()) / scale
            print(
                f"  {name:14s} {len(X)} rows: max |error| {error:.1e} of the output range; "
                f"{len(X)} rows at once == row at a time: {same_chunked}"
            )
        else:
            agree = float(np.mean(predicted == expected))
            print(
                f"  {name:14s} {len(X)} rows: {agree:.1%} of labels equal scikit-learn's; "
                f"{len(X)} rows at once == row at a time: {same_chunked}"
            )
    wheel = f"rkrt-{rkrt.__version__}-py3-none-any.whl"
    print(
        "\nOn a board (aarch64, librknnrt.so installed): here, `make wheel` leaves "
        f"dist/{wheel};\ncopy it with a model and its sidecar ({OUT_DIR}/digits_fp16.rknn and "
        "digits_fp16.rknn.json), then on the board:\n"
        f"  pip install {wheel}   # installs numpy and cffi, nothing else\n"
        "  (or, from a clone of this repository on the board: pip install .)\n"
        "  python -c \"from rkrt import sklearn; m = sklearn.load('digits_fp16.rknn'); "
        'print(m.predict([[0.0] * 64]))"\n'
        "  python -m rkrt info digits_fp16.rknn\n"
        "  python -m rkrt bench digits_fp16.rknn -n 10000 --zero-copy"
    )


def main() -> int:
    start = time.perf_counter()
    print(f"emit {emit.__version__}: scikit-learn -> Rockchip NPU demo (target rk3588)")
    print("Step 1: training MLPClassifier on digits and MLPRegressor on diabetes ...")
    models = train_models()
    for model in models:
        print(f"  {model.name}: {type(model.estimator).__name__}, {model.score}")
    print(f"Step 2: converting each in fp16 and int8, batch sizes {BATCH_SIZES} -> {OUT_DIR}")
    converted = convert_models(models)
    print_report(converted)
    print("Step 4: the same models through rkrt.sklearn on the emulated runtime")
    run_on_emulated_board(converted)
    print(f"\nDone in {time.perf_counter() - start:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
