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

from typing import Optional, Sequence, Union

from .arguments import PathLike
from .compiled import CompiledModel
from .cores import CoreMask, MaskLike
from .estimator import DEFAULT_BATCH_SIZES, MLPClassifier, MLPRegressor, NPUEstimator, plan_batches
from .metadata import ModelMetadata

__all__ = ["MLPClassifier", "MLPRegressor", "from_weights", "load", "plan_batches"]


def _any_task(metadata: ModelMetadata, source: str) -> None:
    """load() picks the class from the task, so every task is accepted."""


def load(
    path: PathLike, *, core_mask: MaskLike = CoreMask.AUTO, library: Optional[str] = None
) -> Union[MLPClassifier, MLPRegressor]:
    """The estimator the model's metadata asks for: MLPRegressor or MLPClassifier."""
    model = CompiledModel(path, core_mask, library, _any_task)
    cls = MLPRegressor if model.metadata.task == "regressor" else MLPClassifier
    return cls._over(model)  # type: ignore[return-value]


def from_weights(
    path: PathLike,
    *,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    core_mask: MaskLike = CoreMask.AUTO,
    library: Optional[str] = None,
) -> NPUEstimator:
    """An MLP from its weights alone (``emit.export_weights``), matmuls on the NPU.

    Same ``predict``/``predict_proba`` as :func:`load` on a compiled model; see
    :func:`rkrt.weights_mlp.from_weights`.
    """
    # Imported here: only users of this path pay for parsing the matmul header.
    from .weights_mlp import from_weights as _from_weights

    return _from_weights(path, batch_sizes=batch_sizes, core_mask=core_mask, library=library)
