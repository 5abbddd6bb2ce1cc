"""`python -m emit`: convert a saved scikit-learn model to a verified .rknn file."""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import warnings
from pathlib import Path
from typing import Any, List, Optional, Sequence

import numpy as np

from emit.convert import ConversionReport, convert
from emit.errors import EmitError
from emit.toolkit import ToolkitError

PICKLE_SUFFIXES = (".pkl", ".pickle")
SKOPS_SUFFIX = ".skops"
CSV_SUFFIX = ".csv"

_DESCRIPTION = """\
Convert a fitted scikit-learn model to an .rknn file for Rockchip NPUs, plus its
sidecar OUT.rknn.json, then check on rknn-toolkit2's simulator that the converted
model computes what scikit-learn computes and that every compute layer runs on the NPU.

SECURITY: loading a .pkl/.pickle file unpickles it, and unpickling runs arbitrary
code: only convert pickles you made or trust. A .skops file is loaded with skops'
trusted-types check: scikit-learn's own classes and skops' default types are
accepted, any other type is refused (and named).
"""

_EPILOG = """\
examples:
  python -m emit model.skops model.rknn --target-platform rk3588
  python -m emit model.pkl model.rknn --quantize int8 --dataset X_train.npy --batch-sizes 1,8,32
  python -m emit tabular.skops tabular.rknn --example-input held_out.csv   # a DataFrame pipeline

scirknn spellings work too: --target_platform, --quantization (same as --quantize int8),
--example_input (also the int8 calibration data when --dataset is not given), --batch_size.
Exit status: 0 on success, 1 when the conversion fails, 2 for invalid arguments.
"""


class CliError(Exception):
    """A problem with what the user asked for, reported as one line."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m emit",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="fitted estimator: MODEL.skops or MODEL.pkl")
    parser.add_argument("out", metavar="OUT.rknn", help="where to write the .rknn model")
    parser.add_argument(
        "--target-platform",
        "--target_platform",
        default="rk3588",
        metavar="PLATFORM",
        help="Rockchip SoC to build for (default: rk3588)",
    )
    parser.add_argument(
        "--quantize",
        "--quantization",
        nargs="?",
        const="int8",
        choices=["int8"],
        default=None,
        help="quantize to int8 (needs --dataset); default: fp16",
    )
    parser.add_argument(
        "--dataset",
        metavar="X.npy|X.csv",
        help="int8 calibration rows: a 2-D .npy array, or a CSV with a header row (read with "
        "pandas) for pipelines fitted on DataFrames",
    )
    parser.add_argument(
        "--example-input",
        "--example_input",
        metavar="X.npy|X.csv",
        help="rows to verify on, as --dataset (default: the calibration rows, or a sample "
        "drawn from the fitted scaler's range; pipelines with a ColumnTransformer, imputer or "
        "encoder need rows)",
    )
    parser.add_argument(
        "--batch-sizes",
        "--batch_size",
        default="1",
        metavar="1,8,32",
        help="comma-separated batch sizes the model accepts (default: 1)",
    )
    parser.add_argument(
        "--no-verify", action="store_true", help="skip the simulator accuracy check"
    )
    parser.add_argument("--report-json", metavar="FILE", help="write the full report as JSON")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        batch_sizes = _parse_batch_sizes(args.batch_sizes)
        estimator = load_model(Path(args.model))
        dataset = _load_rows(args.dataset, "--dataset")
        example = _load_rows(args.example_input, "--example-input")
        if args.quantize == "int8" and dataset is None:
            dataset = example
        with warnings.catch_warnings(record=True) as caught:
            report = convert(
                estimator,
                args.out,
                args.target_platform,
                quantize=args.quantize,
                dataset=dataset,
                batch_sizes=batch_sizes,
                example_input=example,
                verify=not args.no_verify,
            )
        for warning in caught:
            print(f"emit: warning: {_one_line(str(warning.message))}", file=sys.stderr)
        if args.report_json:
            _write_report(report, Path(args.report_json))
    except ToolkitError as exc:
        return _fail(f"rknn-toolkit2 failed in {exc.step}: {exc.reason}")
    except (CliError, EmitError, ValueError, TypeError, OSError) as exc:
        return _fail(str(exc))
    print(report.summary())
    return 0


def load_model(path: Path) -> Any:
    """Load a fitted estimator from .skops (trusted-types check) or .pkl (unpickling)."""
    if not path.is_file():
        raise CliError(f"model file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == SKOPS_SUFFIX:
        return _load_skops(path)
    if suffix in PICKLE_SUFFIXES:
        # The user named a pickle explicitly; --help warns that this runs its code, and so
        # does this line, so that nobody unpickles a file without being told.
        print(
            f"emit: unpickling {path}: this runs any code the file contains "
            "(use a .skops file for files you did not make)",
            file=sys.stderr,
        )
        with path.open("rb") as f:
            try:
                return pickle.load(f)
            except Exception as exc:  # a corrupt pickle raises almost anything
                raise CliError(f"cannot unpickle {path}: {type(exc).__name__}: {exc}") from None
    raise CliError(
        f"cannot tell how to load {path}: expected a .skops file (safe) or a "
        f"{'/'.join(PICKLE_SUFFIXES)} file (runs arbitrary code when loaded)"
    )


def _load_skops(path: Path) -> Any:
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(file=path)
    except Exception as exc:
        raise CliError(f"{path} is not a readable .skops file: {exc}") from None
    # scikit-learn's own classes (e.g. MLP's AdamOptimizer, untrusted by skops' default
    # list) are code the user installed; anything else could be a gadget.
    # numpy.dtype (SimpleImputer records the dtype it was fitted on) describes data, runs nothing.
    foreign = [t for t in untrusted if not t.startswith("sklearn.") and t != "numpy.dtype"]
    if foreign:
        raise CliError(
            f"{path} contains types that are not trusted: {', '.join(foreign)}. "
            "If you trust this file, load it in Python with "
            "skops.io.load(path, trusted=[...]) and call emit.convert on the estimator."
        )
    return skops.io.load(path, trusted=untrusted)


def _parse_batch_sizes(text: str) -> List[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(s < 1 for s in sizes):
        raise CliError(f"--batch-sizes must be positive integers like 1,8,32, got {text!r}")
    return sizes


def _load_rows(path: Optional[str], option: str) -> Optional[Any]:
    if path is None:
        return None
    if path.lower().endswith(CSV_SUFFIX):
        return _load_csv(path, option)
    try:
        rows = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CliError(f"{option} {path}: cannot read a .npy array ({exc})") from None
    if rows.ndim != 2:
        raise CliError(f"{option} {path}: expected a 2-D array (rows, features), got {rows.shape}")
    return rows


def _load_csv(path: str, option: str) -> Any:
    """A CSV with a header as a DataFrame, for pipelines that take one (strings, NaN)."""
    try:
        import pandas
    except ImportError:
        raise CliError(f"{option} {path}: a CSV is read with pandas: pip install pandas") from None
    try:
        return pandas.read_csv(path)
    except (OSError, ValueError) as exc:
        raise CliError(f"{option} {path}: cannot read the CSV ({exc})") from None


def _write_report(report: ConversionReport, path: Path) -> None:
    data = report.to_dict()
    data["toolkit_log"] = report.toolkit_log
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fail(message: str) -> int:
    print(f"emit: error: {_one_line(message)}", file=sys.stderr)
    return 1
