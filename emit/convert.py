"""`convert`: a fitted scikit-learn estimator to a verified .rknn model and its sidecar."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence, Union

import numpy as np
import onnx
from tqdm import tqdm

from emit.checks import check_network
from emit.converters import lower
from emit.export import model_metadata, network_to_onnx
from emit.graph import DEFAULT_OPSET
from emit.network import Affine, Network
from emit.placement import Placement, parse_placement
from emit.toolkit import Toolkit, check_target_platform, toolkit_version
from emit.verify import Accuracy, Tolerance, default_sample, enforce, measure
from rkrt.metadata import ModelMetadata, PathLike, Standardize, file_sha256, write_sidecar

# Verification runs at most this many rows (evenly spaced through the given ones).
MAX_VERIFY_ROWS = 1024


class PlacementWarning(UserWarning):
    """A compute layer of the converted model runs on the CPU instead of the NPU."""


@dataclass(frozen=True)
class ConversionReport:
    """What `convert` built, where it runs and how faithful it is.

    `timings` are seconds per step (and "total"); `sizes` are bytes of the ONNX graph
    and the .rknn file; `accuracy` is None when verification was turned off.
    """

    path: str
    sidecar_path: str
    metadata: ModelMetadata
    placement: Placement
    accuracy: Optional[Accuracy]
    sizes: Dict[str, int]
    timings: Dict[str, float]
    toolkit_log: str

    def summary(self) -> str:
        """A few human-readable lines: model, placement, accuracy, sizes, time."""
        m = self.metadata
        precision = m.quantization or "fp16"
        accuracy = self.accuracy.summary() if self.accuracy else "not verified"
        return "\n".join(
            [
                f"{self.path}: {m.estimator} ({m.task}, outputs {m.outputs}), {precision}, "
                f"{m.target_platform}, batch sizes {', '.join(map(str, m.batch_sizes))}",
                f"  placement: {self.placement.summary()}",
                f"  accuracy:  {accuracy}",
                f"  size:      {self.sizes['rknn'] / 1024:.1f} KiB .rknn "
                f"({self.sizes['onnx'] / 1024:.1f} KiB ONNX)",
                f"  time:      {self.timings['total']:.2f} s (build {self.timings['build']:.2f} s)",
            ]
        )

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready form (the sidecar's fields, placement tables, figures; no log)."""
        return {
            "path": self.path,
            "sidecar_path": self.sidecar_path,
            "metadata": _json_object(self.metadata.to_json()),
            "placement": self.placement.to_dict(),
            "cpu_compute_layers": [
                {"batch_size": b, "name": la.name, "op_type": la.op_type}
                for b, la in self.placement.cpu_compute_layers()
            ],
            "accuracy": self.accuracy.to_dict() if self.accuracy else None,
            "sizes": dict(self.sizes),
            "timings": dict(self.timings),
        }


def convert(
    estimator: Any,
    path: PathLike,
    target_platform: str = "rk3588",
    *,
    quantize: Optional[str] = None,
    dataset: Optional[Any] = None,
    batch_sizes: Sequence[int] = (1,),
    example_input: Optional[Any] = None,
    verify: Union[bool, Tolerance] = True,
    optimization_level: int = 3,
) -> ConversionReport:
    """Convert a fitted estimator to `path` (.rknn) plus its sidecar `path + ".json"`.

    - `batch_sizes`: every size the model accepts (one model, the toolkit's dynamic input).
    - `quantize="int8"` needs `dataset`, calibration rows of shape (n, n_features).
    - `verify`: run the model on the toolkit's simulator on `example_input` (else the
      calibration rows, else a sample drawn from the fitted preprocessing's range) and
      compare with the estimator (on at most 1024 rows, evenly spaced); a `Tolerance` sets
      the thresholds or asks for a warning instead of `VerificationError`. The files are
      only written once verification passes.
    - A pipeline starting with board-side steps (ColumnTransformer, imputers, encoders;
      see `to_preparation`) takes `dataset` and `example_input` as the estimator does
      (a DataFrame, say): the simulator gets their preparation, the estimator the rows
      themselves, so the accuracy is end to end. Such a model needs `example_input` or
      `dataset` to verify on.

    Raises `UnsupportedModelError` for estimators emit cannot convert, `ToolkitError` when
    rknn-toolkit2 fails, `VerificationError`, and ValueError for invalid arguments.
    """
    started = time.perf_counter()
    sizes_checked = _batch_sizes(batch_sizes)
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be None (fp16) or 'int8', got {quantize!r}")
    if not isinstance(verify, (bool, Tolerance)):
        raise TypeError(f"verify must be a bool or an emit.Tolerance, got {verify!r}")
    if not isinstance(optimization_level, int) or not 0 <= optimization_level <= 3:
        raise ValueError(f"optimization_level must be 0, 1, 2 or 3, got {optimization_level!r}")
    directory = Path(path).resolve().parent
    if not directory.is_dir():
        raise FileNotFoundError(
            f"cannot write {os.fspath(path)}: directory {directory} does not exist; create it first"
        )

    # Lowered once: the checks, the ONNX graph, the metadata and verification share it.
    network = lower(estimator)
    n_features = network.n_features_in
    calibration = _rows("dataset", dataset, network)
    example = _rows("example_input", example_input, network)
    if quantize == "int8" and calibration is None:
        raise ValueError(
            "quantize='int8' needs calibration rows: pass dataset=X with X of shape "
            f"(n_samples, {n_features}), e.g. the training data"
        )
    if quantize == "int8" and calibration is not None and network.preparation is not None:
        network, calibration, example = _standardized_input(network, calibration, example)
    if verify and network.preparation is not None and example is None and calibration is None:
        raise ValueError(
            "this pipeline prepares its input on the board (ColumnTransformer, imputers, "
            "encoders), so emit cannot make up rows to verify on: pass example_input= (rows "
            "as the estimator takes them, e.g. a held-out DataFrame) or verify=False"
        )
    if quantize is None and calibration is not None:
        raise ValueError(
            "dataset= is the int8 calibration data; an fp16 build (quantize=None) does not "
            "use it: pass quantize='int8', or pass the rows as example_input= to verify on them"
        )

    # The first toolkit call: what is wrong with the arguments above is said without it.
    check_target_platform(target_platform)
    metadata = model_metadata(
        estimator,
        network,
        batch_sizes=sizes_checked,
        quantization=quantize,
        target_platform=target_platform,
        versions={"rknn-toolkit2": toolkit_version()},
    )
    custom_string = metadata.to_custom_string()
    timings: Dict[str, float] = {}
    n_steps = 5 + (len(sizes_checked) if verify else 0)
    # An ExitStack rather than a parenthesised `with` (Python 3.10+ syntax).
    with contextlib.ExitStack() as stack:
        progress = stack.enter_context(_progress(n_steps, Path(path).name))
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="emit-"))
        with _timed(timings, "checks"):
            progress("checking weights")
            check_network(
                network,
                _prepared(example if example is not None else calibration),
                float16=quantize is None,
            )
        with _timed(timings, "onnx"):
            progress("writing ONNX")
            onnx_path = Path(tmp) / "model.onnx"
            model = network_to_onnx(
                network,
                batch_size=max(sizes_checked),
                opset=DEFAULT_OPSET,
                name=type(estimator).__name__,
            )
            onnx.save(model, onnx_path)
            onnx_size = onnx_path.stat().st_size
        with Toolkit(
            target_platform, optimization_level=optimization_level, custom_string=custom_string
        ) as toolkit:
            with _timed(timings, "build"):
                progress("building with rknn-toolkit2")
                toolkit.build(
                    onnx_path,
                    batch_sizes=sizes_checked,
                    n_features=n_features,
                    quantize=quantize,
                    dataset=_prepared(calibration),
                )
            with _timed(timings, "export"):
                progress("exporting")
                built = Path(tmp) / "model.rknn"
                toolkit.export(built)
            accuracy = None
            if verify:
                with _timed(timings, "verify"):
                    accuracy = _verify(
                        toolkit,
                        estimator,
                        network,
                        example,
                        calibration,
                        sizes_checked,
                        Tolerance() if verify is True else verify,
                        quantize,
                        progress,
                    )
            log = toolkit.log
        placement = parse_placement(log)
        progress("writing the model and its sidecar")
        shutil.move(os.fspath(built), os.fspath(path))
        if accuracy is not None:
            metadata = dataclasses.replace(metadata, verification=accuracy.to_dict())
        sidecar = write_sidecar(path, metadata)
    timings["total"] = time.perf_counter() - started
    fallback = placement.cpu_compute_layers()
    if fallback:
        warnings.warn(
            f"{os.fspath(path)}: {placement.summary()}; these run slower than on the NPU",
            PlacementWarning,
            stacklevel=2,
        )
    return ConversionReport(
        path=os.fspath(path),
        sidecar_path=sidecar,
        metadata=dataclasses.replace(metadata, sha256=file_sha256(path)),
        placement=placement,
        accuracy=accuracy,
        sizes={"onnx": onnx_size, "rknn": os.path.getsize(path)},
        timings=timings,
        toolkit_log=log,
    )


def _verify(
    toolkit: Toolkit,
    estimator: Any,
    network: Network,
    example: Optional[Rows],
    calibration: Optional[Rows],
    batch_sizes: Sequence[int],
    tolerance: Tolerance,
    quantize: Optional[str],
    progress: Any,
) -> Accuracy:
    if example is not None:
        rows, sample = example, "example_input"
    elif calibration is not None:
        rows, sample = calibration, "calibration dataset"
    else:
        sampled, sample = default_sample(estimator, network.n_features_in)
        rows = Rows.of_numbers(sampled)
    n_rows = len(rows.prepared)
    if n_rows > MAX_VERIFY_ROWS:
        # The simulator takes ~2 ms per call; at batch 1 a large set would take minutes.
        picked = np.linspace(0, n_rows - 1, MAX_VERIFY_ROWS).round().astype(int)
        rows, sample = rows.take(picked), f"{sample}, {MAX_VERIFY_ROWS} of {n_rows} rows"

    def on_batch(batch: int) -> None:
        progress(f"verified on the simulator at batch {batch}")

    accuracy = measure(
        lambda x: toolkit.infer(x)[0],
        estimator,
        network.spec,
        rows.prepared,
        batch_sizes=batch_sizes,
        tolerance=tolerance.resolved(quantize),
        sample=sample,
        on_batch=on_batch,
        estimator_input=rows.raw,
    )
    enforce(accuracy, quantize)
    return accuracy


def _batch_sizes(batch_sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(batch_sizes) if not isinstance(batch_sizes, (int, str)) else (batch_sizes,)
    if not sizes or not all(
        isinstance(b, (int, np.integer)) and not isinstance(b, bool) and b >= 1 for b in sizes
    ):
        raise ValueError(f"batch_sizes must be positive ints, e.g. (1, 8, 32); got {batch_sizes!r}")
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"batch_sizes must be distinct, got {batch_sizes!r}")
    return tuple(sorted(int(b) for b in sizes))


@dataclass(frozen=True)
class Rows:
    """Rows as the NPU gets them (`prepared`, float32) and as the estimator does (`raw`:
    the user's own rows for a model with a board-side preparation, else None)."""

    prepared: np.ndarray
    raw: Optional[Any] = None

    @classmethod
    def of_numbers(cls, values: Any) -> Rows:
        return cls(np.ascontiguousarray(values, dtype=np.float32))

    def take(self, picked: np.ndarray) -> Rows:
        raw = self.raw
        if raw is not None:
            raw = (
                raw.iloc[picked] if hasattr(raw, "iloc") else np.asarray(raw, dtype=object)[picked]
            )
        return Rows(self.prepared[picked], raw)


def _standardized_input(
    network: Network, calibration: Rows, example: Optional[Rows]
) -> tuple[Network, Rows, Optional[Rows]]:
    """The network with its prepared input standardized on the board (int8 builds).

    The runtime quantizes the whole input with one scale; prepared columns (raw amounts
    next to one-hot zeros and ones) differ in range by orders of magnitude, and the small
    ones would quantize to a few levels. Standardizing them with the calibration rows'
    mean and standard deviation (in numpy, before the NPU) and folding the inverse into
    the first layer keeps the float computation the same.
    """
    rows = calibration.prepared.astype(np.float64)
    offset = rows.mean(axis=0)
    spread = rows.std(axis=0)
    scale = np.where(spread > 0, 1.0 / np.where(spread > 0, spread, 1.0), 1.0)
    step = Standardize(tuple(offset.tolist()), tuple(scale.tolist()))
    preparation = dataclasses.replace(network.preparation, steps=(*network.preparation.steps, step))
    # The first layer takes z = (x - offset) * scale and computes what it did on x.
    standardized = dataclasses.replace(
        network.after(Affine(1.0 / scale, offset)), preparation=preparation
    )

    def apply(found: Optional[Rows]) -> Optional[Rows]:
        if found is None:
            return None
        z = ((found.prepared - offset) * scale).astype(np.float32)
        return Rows(np.ascontiguousarray(z), found.raw)

    return standardized, apply(calibration), apply(example)


def _prepared(rows: Optional[Rows]) -> Optional[np.ndarray]:
    return None if rows is None else rows.prepared


def _rows(name: str, values: Optional[Any], network: Network) -> Optional[Rows]:
    if values is None:
        return None
    preparation = network.preparation
    n_features = network.n_features_in if preparation is None else preparation.n_features_in
    if preparation is None:
        rows = np.asarray(values, dtype=np.float32)
    else:
        rows = preparation.transform(values, name=name)
    if rows.ndim != 2 or rows.shape[1] != network.n_features_in or rows.shape[0] == 0:
        raise ValueError(
            f"{name} must be a non-empty 2-D array of shape (n_samples, {n_features}), "
            f"got shape {rows.shape}"
        )
    if not np.isfinite(rows).all():
        prepared = "" if preparation is None else " after the board-side preparation"
        raise ValueError(
            f"{name} contains NaN or infinite values (as float32){prepared}; remove them"
        )
    return Rows(rows, None if preparation is None else values)


def _json_object(text: str) -> Dict[str, Any]:
    return json.loads(text)


@contextlib.contextmanager
def _timed(timings: Dict[str, float], step: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[step] = time.perf_counter() - start


@contextlib.contextmanager
def _progress(total: int, name: str) -> Iterator[Any]:
    """A progress bar on a terminal, shown once the conversion takes more than a moment.

    It writes to a duplicate of the real stderr (the toolkit steps redirect fd 2), and
    stays off when stderr is not a terminal, where carriage returns only clutter logs.
    """
    stream = os.fdopen(os.dup(2), "w", encoding="utf-8", errors="replace")
    bar = tqdm(
        total=total,
        desc=f"emit {name}",
        delay=1.0,
        file=stream,
        leave=False,
        unit="step",
        disable=not stream.isatty(),
    )

    def advance(label: str) -> None:
        bar.set_postfix_str(label, refresh=False)
        bar.update(1)

    try:
        yield advance
    finally:
        bar.close()
        stream.close()
