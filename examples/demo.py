"""End-to-end demo: scikit-learn models converted for a Rockchip NPU, and proof they still work.

Steps (each a function, run in order by `main`):
1. train an MLPClassifier on scikit-learn's digits and an MLPRegressor on its diabetes data;
2. convert each with emit, in fp16 and int8, into one model accepting batch sizes 1, 8 and 32
   (files under .cache/demo/);
3. report, per model: accuracy against scikit-learn on held-out rows (run on rknn-toolkit2's
   simulator at every batch size) and where each layer runs (NPU or CPU).

Run with `make demo`.
"""

from __future__ import annotations

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
    print(f"\nDone in {time.perf_counter() - start:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
