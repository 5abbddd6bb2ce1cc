"""scikit-learn MLPs from their weights alone: matmuls on the NPU, the rest in numpy.

>>> from rkrt.weights_mlp import from_weights
>>> with from_weights("model.npz") as clf:   # written by emit.export_weights, no .rknn needed
...     labels = clf.predict(X)

Each layer is one :class:`rkrt.MatMul` (float16 A and B, float32 accumulation, as the NPU
computes a float16 .rknn model); bias and activation run in numpy on float32.
``predict``/``predict_proba``, input validation and batching are those of :mod:`rkrt.sklearn`
(rkrt.estimator over this module's MatMulMLP forward pass: same labels, same dtype handling,
same errors), so the two paths differ by one line.
The .npz is read with ``allow_pickle=False``: it holds only arrays and JSON text.
"""

from __future__ import annotations

import os
from typing import Callable, Optional, Sequence, Union

import numpy as np

from .arguments import PathLike
from .cores import CoreMask, MaskLike
from .estimator import DEFAULT_BATCH_SIZES, MLPClassifier, MLPRegressor, NPUEstimator
from .matmul import MatMul
from .metadata import WEIGHTS_FORMAT as FORMAT
from .metadata import ModelMetadata


def _logistic(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp overflow gives exactly the limit 0
        return 1.0 / (1.0 + np.exp(-z))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda z: z,
    "relu": lambda z: np.maximum(z, 0.0, out=z),
    "tanh": lambda z: np.tanh(z, out=z),
    "logistic": _logistic,
    "softmax": _softmax,
    "exp": np.exp,  # MLPRegressor(loss="poisson")
}


class WeightsFile:
    """The contents of a weights .npz, checked: layers chain and match the metadata."""

    def __init__(self, path: PathLike) -> None:
        self.path = os.fspath(path)
        with np.load(self.path, allow_pickle=False) as z:
            if "format" not in z.files or str(z["format"]) != FORMAT:
                raise ValueError(
                    f"{self.path} is not an rkrt weights file (format {FORMAT!r}); write one "
                    "with emit.export_weights(estimator, path)"
                )
            self.metadata = ModelMetadata.from_json(str(z["metadata"]), source=self.path)
            self.activation, self.out_activation = str(z["activation"]), str(z["out_activation"])
            n_layers = sum(1 for name in z.files if name.startswith("coef_"))
            self.coefs = [np.asarray(z[f"coef_{i}"], np.float32) for i in range(n_layers)]
            self.intercepts = [np.asarray(z[f"intercept_{i}"], np.float32) for i in range(n_layers)]
        self._check()

    def _check(self) -> None:
        for name in (self.activation, self.out_activation):
            if name not in ACTIVATIONS:
                raise ValueError(f"{self.path}: unknown activation {name!r}; known: "
                                 f"{', '.join(ACTIVATIONS)}")  # fmt: skip
        width = self.metadata.n_features_in
        if not self.coefs:
            raise ValueError(f"{self.path} holds no layers (coef_0 missing)")
        for i, (w, b) in enumerate(zip(self.coefs, self.intercepts)):
            if w.ndim != 2 or w.shape[0] != width or b.shape != (w.shape[1],):
                raise ValueError(
                    f"{self.path}: layer {i} has coef {w.shape} and intercept {b.shape}; "
                    f"expected ({width}, n) and (n,): the file is damaged"
                )
            width = w.shape[1]
        self.n_outputs = width


class MatMulMLP:
    """The forward pass of an MLP from its weights: one MatMul per layer, the rest in numpy."""

    def __init__(
        self,
        weights: WeightsFile,
        batch_sizes: Sequence[int],
        core_mask: MaskLike,
        library: Optional[PathLike],
    ) -> None:
        self.source = weights.path
        self.label = f".from_weights({weights.path!r})"
        self.metadata = weights.metadata
        self.batch_sizes = tuple(sorted({int(b) for b in batch_sizes}, reverse=True))
        self.width = weights.n_outputs
        self._hidden = ACTIVATIONS[weights.activation]
        self._output = ACTIVATIONS[weights.out_activation]
        self._intercepts = weights.intercepts
        self._layers: list[MatMul] = []
        try:
            for w in weights.coefs:
                mm = MatMul(self.batch_sizes, w.shape[0], w.shape[1], dtype="float16",
                            core_mask=core_mask, library=library)  # fmt: skip
                self._layers.append(mm)
                mm.set_b(w)
        except BaseException:
            self.close()
            raise

    def run(self, chunk: np.ndarray, out: Optional[np.ndarray]) -> np.ndarray:
        """The network's output on one batch of rows, into ``out`` when given."""
        h = chunk
        last = len(self._layers) - 1
        for i, (mm, b) in enumerate(zip(self._layers, self._intercepts)):
            z = mm.run(h)
            z += b
            h = (self._output if i == last else self._hidden)(z)
        if out is None:
            return h
        out[...] = h
        return out

    def close(self) -> None:
        """Release every layer's NPU context; idempotent."""
        for mm in self._layers:
            mm.close()


def _open_weights(
    self: NPUEstimator,
    path: Union[PathLike, WeightsFile],
    *,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    core_mask: MaskLike = CoreMask.AUTO,
    library: Optional[PathLike] = None,
) -> None:
    """Open the weights file ``path`` (the ``__init__`` of both classes below)."""
    weights = path if isinstance(path, WeightsFile) else WeightsFile(path)
    # Refused before any NPU context exists.
    self._accept(weights.metadata, weights.path,
                 "open it with from_weights(), which picks the right class")  # fmt: skip
    self._attach(MatMulMLP(weights, batch_sizes, core_mask, library))


class WeightsMLPClassifier(MLPClassifier):
    """An MLPClassifier run from its weights file; the API of rkrt.sklearn.MLPClassifier."""

    __init__ = _open_weights


class WeightsMLPRegressor(MLPRegressor):
    """An MLPRegressor run from its weights file; the API of rkrt.sklearn.MLPRegressor."""

    __init__ = _open_weights


def from_weights(
    path: PathLike,
    *,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    core_mask: MaskLike = CoreMask.AUTO,
    library: Optional[PathLike] = None,
) -> Union[WeightsMLPClassifier, WeightsMLPRegressor]:
    """Open a weights .npz (emit.export_weights) as the matching estimator.

    ``batch_sizes``: the row counts of the NPU calls (any number of rows is run in chunks
    of these, the last one zero-padded); one MatMul context per layer serves them all.
    """
    weights = WeightsFile(path)
    cls = WeightsMLPRegressor if weights.metadata.task == "regressor" else WeightsMLPClassifier
    return cls(weights, batch_sizes=batch_sizes, core_mask=core_mask, library=library)
