"""The scikit-learn-style estimators, over a forward pass: validation, batching and the API.

A forward pass computes the model's raw output on the NPU for one compiled batch of rows:
a compiled .rknn model (rkrt.compiled.CompiledModel) or an MLP's matmuls from its weights
(rkrt.weights_mlp.MatMulMLP). The estimators validate input, cut rows into batches and
read labels or values from the output the same way over either (see rkrt.sklearn).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Optional, Protocol

import numpy as np

from .arguments import PathLike
from .compiled import CompiledModel
from .cores import CoreMask, MaskLike
from .metadata import ModelMetadata

# The row counts of a forward pass that has no compiled ones (rkrt.weights_mlp).
DEFAULT_BATCH_SIZES = (1, 32)

# scikit-learn's threshold on per-label probabilities (LabelBinarizer.inverse_transform).
_MULTILABEL_THRESHOLD = {"probabilities": 0.5, "decision": 0.0}


class Forward(Protocol):
    """What an estimator runs: ``batch_sizes`` largest first, ``width`` outputs per row.

    ``source`` names the model file in errors, ``label`` follows the class name in repr().
    """

    source: str
    label: str
    metadata: ModelMetadata
    batch_sizes: tuple[int, ...]
    width: int

    def run(self, chunk: np.ndarray, out: Optional[np.ndarray]) -> np.ndarray:
        """float32 (len(chunk), width) for a chunk of one of ``batch_sizes`` rows; written
        into ``out`` when given."""

    def close(self) -> None:
        """Release the NPU contexts; idempotent."""


def plan_batches(n_rows: int, batch_sizes: tuple[int, ...]) -> list[tuple[int, int]]:
    """(first row, compiled batch size) of each run covering `n_rows` rows.

    Full chunks of the largest size, then one run at the smallest size holding the
    rest (the caller zero-pads it).
    """
    largest = max(batch_sizes)
    n_full = n_rows // largest
    plan = [(i * largest, largest) for i in range(n_full)]
    tail = n_rows - n_full * largest
    if tail:
        plan.append((n_full * largest, min(b for b in batch_sizes if b >= tail)))
    return plan


def run_batched(forward: Forward, x: np.ndarray) -> np.ndarray:
    """``forward`` over every row of the float32 (n_rows, n_features) ``x``."""
    n_rows, n_features = x.shape
    out = np.empty((n_rows, forward.width), dtype=np.float32)
    for start, size in plan_batches(n_rows, forward.batch_sizes):
        rows = min(size, n_rows - start)
        if rows == size:  # row slices of C-contiguous arrays are contiguous: no copies
            forward.run(x[start : start + size], out[start : start + size])
        else:
            chunk = np.zeros((size, n_features), dtype=np.float32)
            chunk[:rows] = x[start : start + rows]
            out[start : start + rows] = forward.run(chunk, None)[:rows]
    return out


class NPUEstimator:
    """Shared part: the forward pass, metadata, input validation and batching."""

    _TASKS: tuple[str, ...] = ()

    def __init__(
        self, path: PathLike, *, core_mask: MaskLike = CoreMask.AUTO, library: Optional[str] = None
    ) -> None:
        self._attach(CompiledModel(path, core_mask, library, self._accept))

    @classmethod
    def _over(cls, forward: Forward) -> NPUEstimator:
        """An estimator over an opened forward pass whose task it runs."""
        estimator = cls.__new__(cls)
        estimator._attach(forward)
        return estimator

    def _accept(self, metadata: ModelMetadata, source: str, advice: str = "") -> None:
        """Refuse a model whose task this class cannot run (before its forward is built)."""
        if metadata.task in self._TASKS:
            return
        other = "MLPRegressor" if metadata.task == "regressor" else "MLPClassifier"
        raise ValueError(
            f"{source} is a {metadata.task} ({metadata.estimator or 'unknown'}), not "
            f"something {type(self).__name__} can run: "
            f"{advice or f'use rkrt.sklearn.{other} or rkrt.sklearn.load'}"
        )

    def _attach(self, forward: Forward) -> None:
        self._model = forward
        self._metadata = forward.metadata

    # --- scikit-learn attributes -------------------------------------------------
    @property
    def metadata(self) -> ModelMetadata:
        """What the model's sidecar (or custom string) says about it."""
        return self._metadata

    @property
    def n_features_in_(self) -> int:
        """Number of features the model takes."""
        return self._metadata.n_features_in

    @property
    def feature_names_in_(self) -> np.ndarray:
        """Feature names seen at fit time; absent (AttributeError) when fitted without names."""
        names = self._metadata.feature_names_in
        if names is None:
            raise AttributeError(
                f"{type(self).__name__} has no feature_names_in_: the model was fitted "
                "without feature names"
            )
        return np.asarray(names, dtype=object)

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """The row counts of one NPU run (compiled, or chosen for matmuls), largest first."""
        return self._model.batch_sizes

    # --- lifecycle -----------------------------------------------------------------
    def close(self) -> None:
        """Release the NPU contexts; idempotent."""
        self._model.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self._model.label}"

    # --- computing ---------------------------------------------------------------------
    def _forward(self, X: Any) -> np.ndarray:
        """The model's raw output for every row of X: float32 (n_rows, output width)."""
        return run_batched(self._model, _validate(X, self._metadata, type(self).__name__))


class MLPClassifier(NPUEstimator):
    """A converted classifier: binary, multiclass or multilabel.

    ``predict`` returns labels of the original type (multilabel: an int indicator
    array); ``predict_proba`` exists when the model outputs probabilities and
    ``decision_function`` when it outputs decision values (LinearSVC, SGDClassifier).
    """

    _TASKS = ("classifier", "multilabel")

    @property
    def classes_(self) -> np.ndarray:
        """The class labels, in the model's output order."""
        return np.asarray(self._metadata.classes)

    def predict(self, X: Any) -> np.ndarray:
        """Labels (n_rows,); for multilabel models an indicator array (n_rows, n_labels)."""
        y = self._forward(X)
        if self._metadata.task == "multilabel":
            return (y > _MULTILABEL_THRESHOLD[self._metadata.outputs]).astype(np.intp)
        if y.shape[1] == 1:  # scirknn binary: the positive class's probability alone
            return self.classes_[(y[:, 0] > 0.5).astype(np.intp)]
        return self.classes_[np.argmax(y, axis=1)]

    @property
    def predict_proba(self) -> Callable[[Any], np.ndarray]:
        """Class probabilities (n_rows, n_classes), float32."""
        if self._metadata.outputs != "probabilities":
            raise AttributeError(
                f"this {self._metadata.estimator or 'model'} outputs decision values, not "
                "probabilities; use decision_function (or predict)"
            )
        return self._predict_proba

    @property
    def decision_function(self) -> Callable[[Any], np.ndarray]:
        """Decision values: (n_rows,) for binary models, (n_rows, n_classes) otherwise."""
        if self._metadata.outputs != "decision":
            raise AttributeError(
                f"this {self._metadata.estimator or 'model'} outputs probabilities, not "
                "decision values; use predict_proba (or predict)"
            )
        return self._decision_function

    def _predict_proba(self, X: Any) -> np.ndarray:
        y = self._forward(X)
        if y.shape[1] == 1:
            return np.concatenate([1.0 - y, y], axis=1)
        return y

    def _decision_function(self, X: Any) -> np.ndarray:
        y = self._forward(X)
        # emit widens a binary score z to [-z, z]; scikit-learn returns z alone.
        if self._metadata.task == "classifier" and len(self._metadata.classes) == 2:
            return y[:, 1]
        return y


class MLPRegressor(NPUEstimator):
    """A converted regressor: ``predict`` gives (n_rows,) for one target, else (n_rows, k)."""

    _TASKS = ("regressor",)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted values, float32."""
        y = self._forward(X)
        return y[:, 0] if y.shape[1] == 1 else y


def _validate(X: Any, metadata: ModelMetadata, name: str) -> np.ndarray:
    """X as a C-contiguous float32 (n_rows, n_features) array, checked like scikit-learn."""
    _check_feature_names(X, metadata.feature_names_in, name)
    if hasattr(X, "tocsr") or hasattr(X, "toarray"):
        raise TypeError(f"{name} does not take sparse input; convert it with X.toarray()")
    x = np.asarray(X)
    if x.dtype.kind == "c":
        raise ValueError("Complex data not supported")
    if x.dtype.kind not in "biuf":
        x = x.astype(np.float64)  # strings of numbers, as scikit-learn; others raise here
    if x.ndim != 2:
        if x.ndim > 2:
            raise ValueError(f"Found array with dim {x.ndim}. {name} expected <= 2.")
        kind = "scalar" if x.ndim == 0 else "1D"
        raise ValueError(
            f"Expected 2D array, got {kind} array instead:\narray={x}.\n"
            "Reshape your data either using array.reshape(-1, 1) if your data has a single "
            "feature or array.reshape(1, -1) if it contains a single sample."
        )
    if x.shape[1] != metadata.n_features_in:
        raise ValueError(
            f"X has {x.shape[1]} features, but {name} is expecting "
            f"{metadata.n_features_in} features as input."
        )
    with np.errstate(over="ignore"):
        x32 = np.ascontiguousarray(x, dtype=np.float32)
    if x32.dtype.kind == "f" and not np.isfinite(x32).all():
        if np.isnan(x32).any():
            raise ValueError(f"Input X contains NaN. {name} does not accept missing values.")
        raise ValueError("Input X contains infinity or a value too large for dtype('float32').")
    return x32


def _check_feature_names(X: Any, fitted: Optional[tuple[str, ...]], name: str) -> None:
    given = _feature_names(X)
    if given is None and fitted is None:
        return
    if given is None:
        warnings.warn(
            f"X does not have valid feature names, but {name} was fitted with feature names",
            UserWarning,
            stacklevel=5,
        )
        return
    if fitted is None:
        warnings.warn(
            f"X has feature names, but {name} was fitted without feature names",
            UserWarning,
            stacklevel=5,
        )
        return
    if tuple(given) == fitted:
        return
    message = "The feature names should match those that were passed during fit.\n"
    unseen = [n for n in given if n not in fitted]
    missing = [n for n in fitted if n not in given]
    if unseen:
        message += "Feature names unseen at fit time:\n" + "".join(f"- {n}\n" for n in unseen)
    if missing:
        message += "Feature names seen at fit time, yet now missing:\n" + "".join(
            f"- {n}\n" for n in missing
        )
    if not unseen and not missing:
        message += "Feature names must be in the same order as they were in fit.\n"
    raise ValueError(message)


def _feature_names(X: Any) -> Optional[list[str]]:
    """String column names of a DataFrame-like X (as scikit-learn), else None."""
    columns = getattr(X, "columns", None)
    if columns is None:
        return None
    names = list(columns)
    string_names = [isinstance(n, str) for n in names]
    if names and all(string_names):
        return names
    if any(string_names):
        kinds = sorted({type(n).__name__ for n in names})
        raise TypeError(
            "Feature names are only supported if all input features have string names, "
            f"but your input has {kinds} as feature name / column name types. Convert them "
            "all to strings, e.g. X.columns = X.columns.astype(str)."
        )
    return None
