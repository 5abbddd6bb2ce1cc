"""scikit-learn-style estimators for models converted by `emit` (or scirknn), run on the NPU.

>>> from rkrt.sklearn import load
>>> with load("digits.rknn") as clf:        # reads digits.rknn.json (or the model's custom string)
...     labels = clf.predict(X)             # same labels as the scikit-learn estimator
...     proba = clf.predict_proba(X)

``MLPClassifier(path)`` and ``MLPRegressor(path)`` serve any classifier / regressor
`emit` converts (the linear models too: they are one-layer networks); ``load(path)``
picks the right one from the model's metadata. scikit-learn is not needed on the board.

``from_weights(path)`` runs an MLP with no conversion step at all: the ``.npz`` that
``emit.export_weights`` writes, one NPU matrix multiply per layer (see rkrt.weights_mlp).

The metadata comes from the sidecar ``MODEL.rknn.json`` when it exists (its sha256
must match the model file), else from the .rknn's custom string. scirknn sidecars
are read as well, so ``import scirknn`` becomes ``from rkrt import sklearn as scirknn``.

Differences from scikit-learn, on purpose:

* Inputs are converted to float32, the widest type the NPU takes (scikit-learn
  computes in float64); results are float32 too. Integer, bool, float16 and
  float64 data, lists and pandas DataFrames are accepted like scikit-learn does.
  (``rkrt.Session`` itself never converts silently; this layer does because a
  scikit-learn-style API is expected to.)
* Zero rows are allowed and give empty results (scikit-learn raises).
* NaN and infinity raise ValueError, also for values that only overflow float32.

Any number of rows is run in chunks of the model's compiled batch sizes: as many
chunks of the largest size as fit, then the remaining rows in one run at the
smallest size that holds them, zero-padded if needed (the fewest runs; rows never
influence each other, so results equal those of one row at a time).
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Callable, Optional, Union

import numpy as np

from .arguments import PathLike
from .cores import CoreMask, MaskLike
from .metadata import MetadataError, ModelMetadata, read_sidecar, sidecar_path
from .session import Session

# scikit-learn's threshold on per-label probabilities (LabelBinarizer.inverse_transform).
_MULTILABEL_THRESHOLD = {"probabilities": 0.5, "decision": 0.0}


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


class _NPUEstimator:
    """Shared part: the session, metadata, input validation and chunked forward pass."""

    _TASKS: tuple[str, ...] = ()

    def __init__(
        self, path: PathLike, *, core_mask: MaskLike = CoreMask.AUTO, library: Optional[str] = None
    ) -> None:
        session, metadata = _open(path, core_mask, library)
        _attach_or_close(self, path, session, metadata)

    def _attach(self, path: PathLike, session: Session, metadata: ModelMetadata) -> None:
        name = type(self).__name__
        if metadata.task not in self._TASKS:
            other = "MLPRegressor" if metadata.task == "regressor" else "MLPClassifier"
            raise ValueError(
                f"{os.fspath(path)} is a {metadata.task} ({metadata.estimator or 'unknown'}), "
                f"not something {name} can run: use rkrt.sklearn.{other} or rkrt.sklearn.load"
            )
        self._path = os.fspath(path)
        self._session = session
        self._metadata = metadata
        self._batch_sizes, self._width = _check_model(self._path, session, metadata)

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
        """The batch sizes the model was compiled for, largest first."""
        return self._batch_sizes

    # --- lifecycle -----------------------------------------------------------------
    def close(self) -> None:
        """Release the NPU context; idempotent."""
        self._session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._path!r})"

    # --- computing ---------------------------------------------------------------------
    def _forward(self, X: Any) -> np.ndarray:
        """The model's raw output for every row of X: float32 (n_rows, output width)."""
        x = _validate(X, self._metadata, type(self).__name__)
        n_features = x.shape[1]
        out = np.empty((x.shape[0], self._width), dtype=np.float32)
        for start, size in plan_batches(x.shape[0], self._batch_sizes):
            rows = min(size, x.shape[0] - start)
            if rows == size:  # row slices of C-contiguous arrays are contiguous: no copies
                self._session.run(x[start : start + size], out=[out[start : start + size]])
            else:
                chunk = np.zeros((size, n_features), dtype=np.float32)
                chunk[:rows] = x[start : start + rows]
                out[start : start + rows] = self._session.run(chunk)[0][:rows]
        return out


class MLPClassifier(_NPUEstimator):
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


class MLPRegressor(_NPUEstimator):
    """A converted regressor: ``predict`` gives (n_rows,) for one target, else (n_rows, k)."""

    _TASKS = ("regressor",)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted values, float32."""
        y = self._forward(X)
        return y[:, 0] if y.shape[1] == 1 else y


def load(
    path: PathLike, *, core_mask: MaskLike = CoreMask.AUTO, library: Optional[str] = None
) -> Union[MLPClassifier, MLPRegressor]:
    """The estimator the model's metadata asks for: MLPRegressor or MLPClassifier."""
    session, metadata = _open(path, core_mask, library)
    cls = MLPRegressor if metadata.task == "regressor" else MLPClassifier
    estimator = cls.__new__(cls)
    _attach_or_close(estimator, path, session, metadata)
    return estimator


def from_weights(
    path: PathLike,
    *,
    batch_sizes: tuple[int, ...] = (1, 32),
    core_mask: MaskLike = CoreMask.AUTO,
    library: Optional[str] = None,
) -> _NPUEstimator:
    """An MLP from its weights alone (``emit.export_weights``), matmuls on the NPU.

    Same ``predict``/``predict_proba`` as :func:`load` on a compiled model; see
    :func:`rkrt.weights_mlp.from_weights`.
    """
    # Imported here: rkrt.weights_mlp builds on this module's estimators.
    from .weights_mlp import from_weights as _from_weights

    return _from_weights(path, batch_sizes=batch_sizes, core_mask=core_mask, library=library)


def _open(
    path: PathLike, core_mask: MaskLike, library: Optional[str]
) -> tuple[Session, ModelMetadata]:
    """The model's session and metadata (sidecar if there is one, else custom string)."""
    # Reading the sidecar first means a wrong one fails before the runtime is touched.
    try:
        sidecar: Optional[ModelMetadata] = read_sidecar(path)
    except FileNotFoundError:
        sidecar = None
    session = Session(path, core_mask=core_mask, library=library)
    if sidecar is not None:
        return session, sidecar
    try:
        return session, _custom_string_metadata(path, session)
    except BaseException:
        session.close()
        raise


def _attach_or_close(
    estimator: _NPUEstimator, path: PathLike, session: Session, metadata: ModelMetadata
) -> None:
    try:
        estimator._attach(path, session, metadata)
    except BaseException:
        session.close()
        raise


def _batch_sizes(session: Session) -> tuple[int, ...]:
    shapes = session.input_shapes
    return tuple(sorted({int(s[0][0]) for s in shapes}, reverse=True))


def _custom_string_metadata(path: PathLike, session: Session) -> ModelMetadata:
    """The metadata in the model's custom string (for a model without sidecar)."""
    text = session.custom_string
    if not text.strip():
        raise MetadataError(
            f"{os.fspath(path)}: no sidecar at {sidecar_path(path)} and the model's custom "
            "string is empty, so nothing says what its outputs mean. Copy the .json written "
            "with the model next to it, or convert it again with emit (which fills both)."
        )
    return ModelMetadata.from_custom_string(text, source=f"custom string of {os.fspath(path)}")


def _check_model(
    path: str, session: Session, metadata: ModelMetadata
) -> tuple[tuple[int, ...], int]:
    """The model's batch sizes and output width, after checking they fit the metadata."""
    if len(session.inputs) != 1 or len(session.outputs) != 1:
        raise ValueError(
            f"{path} has {len(session.inputs)} inputs and {len(session.outputs)} outputs; "
            "rkrt.sklearn runs models with one input and one output, as emit builds them. "
            "Use rkrt.Session for other models."
        )
    in_shape, out_shape = session.inputs[0].shape, session.outputs[0].shape
    if len(in_shape) != 2 or len(out_shape) != 2:
        raise ValueError(
            f"{path} takes {in_shape} and returns {out_shape}; rkrt.sklearn expects "
            "(batch, features) -> (batch, outputs) tensors"
        )
    if in_shape[1] != metadata.n_features_in:
        raise MetadataError(
            f"{path}: the metadata says {metadata.n_features_in} features but the model's "
            f"input is {in_shape}; the metadata belongs to another model"
        )
    width = out_shape[1]
    if metadata.classes is not None:
        n_classes = len(metadata.classes)
        binary_single = metadata.task == "classifier" and n_classes == 2 and width == 1
        if width != n_classes and not binary_single:
            raise MetadataError(
                f"{path}: the metadata lists {n_classes} classes but the model outputs "
                f"{width} values per row; the metadata belongs to another model"
            )
    return _batch_sizes(session), width


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
