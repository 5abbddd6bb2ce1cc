"""Board-side steps: ColumnTransformer, SimpleImputer, OneHotEncoder and OrdinalEncoder.

No NPU op takes strings or missing values, so these steps become an
`rkrt.preparation` description the board runs in numpy before the NPU call. What
they are is read from the fitted objects; which output column each category lands
in is asked of the fitted encoder itself (its own transform of every category),
so drop, min_frequency and max_categories need no re-implementation here.
Affine steps inside a ColumnTransformer branch (after its board steps) become one
block-diagonal `Affine` that the Pipeline converter folds into the first layer.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder
from sklearn.utils._mask import _get_mask

from emit.converters.registry import (
    is_board_step,
    lower_board,
    lower_transform,
    register_board,
    supported,
)
from emit.errors import UnsupportedModelError
from emit.network import Affine
from rkrt.metadata import (
    UNKNOWN_ERROR,
    UNKNOWN_ZEROS,
    Branch,
    Impute,
    OneHot,
    Ordinal,
    Select,
    Step,
)


def flatten(pipeline: Pipeline) -> list[Any]:
    """The steps in order, nested Pipelines expanded and 'passthrough'/None steps dropped."""
    steps: list[Any] = []
    for _, step in pipeline.steps:
        if isinstance(step, Pipeline):
            steps.extend(flatten(step))
        elif step is not None and not (isinstance(step, str) and step == "passthrough"):
            steps.append(step)
    return steps


def split_steps(steps: list[Any], where: str) -> tuple[tuple[Step, ...], Optional[Affine]]:
    """Board steps first, then affine ones: the preparation steps and the affine map.

    A board step after an affine step would need the affine part on the board too;
    it is refused, naming both.
    """
    board: list[Step] = []
    affine: Optional[Affine] = None
    affine_name = None
    for step in steps:
        if is_board_step(step):
            if affine is not None:
                raise UnsupportedModelError(
                    f"{type(step).__name__} comes after the affine step {affine_name} in "
                    f"{where}: emit runs {', '.join(supported()['board'])} on the board before "
                    "the NPU, so they must come first; move it before the scalers"
                )
            prepared, following = lower_board(step)
            board.append(prepared)
            affine, affine_name = following, (type(step).__name__ if following else None)
        else:
            step_map = lower_transform(step)
            affine = step_map if affine is None else affine.then(step_map)
            affine_name = type(step).__name__
    return tuple(board), affine


# --- ColumnTransformer ---------------------------------------------------------------
@register_board(ColumnTransformer)
def convert_column_transformer(ct: ColumnTransformer) -> tuple[Select, Optional[Affine]]:
    specified = {name: trans for name, trans, _ in ct.transformers}
    specified["remainder"] = ct.remainder
    weights = ct.transformer_weights or {}
    branches, maps = [], []
    for name, fitted, _ in ct.transformers_:
        columns = tuple(int(i) for i in ct._transformer_to_input_indices[name])
        if _is_drop(specified[name]) or not columns:
            continue
        if _is_passthrough(specified[name]):
            steps: tuple[Step, ...] = ()
            affine = None
        else:
            chain = flatten(fitted) if isinstance(fitted, Pipeline) else [fitted]
            steps, affine = split_steps(chain, f"the ColumnTransformer branch {name!r}")
        branch = Branch(columns, steps)
        if affine is None:
            affine = Affine(np.ones(branch.n_out), np.zeros(branch.n_out))
        weight = weights.get(name)
        if weight is not None:
            affine = affine.then(
                Affine(np.full(affine.n_out, float(weight)), np.zeros(affine.n_out))
            )
        branches.append(branch)
        maps.append(affine)
    select = Select(int(ct.n_features_in_), tuple(branches))
    combined = _block_diagonal(maps)
    return select, None if combined.is_identity else combined


def _is_drop(spec: Any) -> bool:
    return isinstance(spec, str) and spec == "drop"


def _is_passthrough(spec: Any) -> bool:
    return isinstance(spec, str) and spec == "passthrough"


def _block_diagonal(maps: list[Affine]) -> Affine:
    offset = np.concatenate([m.offset for m in maps]) if maps else np.zeros(0)
    if all(m.matrix.ndim == 1 for m in maps):
        return Affine(np.concatenate([m.matrix for m in maps]) if maps else np.zeros(0), offset)
    matrix = np.zeros((sum(m.n_in for m in maps), sum(m.n_out for m in maps)))
    row = col = 0
    for m in maps:
        block = np.diag(m.matrix) if m.matrix.ndim == 1 else m.matrix
        matrix[row : row + m.n_in, col : col + m.n_out] = block
        row, col = row + m.n_in, col + m.n_out
    return Affine(matrix, offset)


# --- imputer and encoders --------------------------------------------------------------
@register_board(SimpleImputer)
def convert_simple_imputer(imputer: SimpleImputer) -> tuple[Impute, None]:
    if not _is_nan(imputer.missing_values):
        raise UnsupportedModelError(
            f"SimpleImputer(missing_values={imputer.missing_values!r}) is not supported: emit "
            "converts imputers of NaN (missing_values=np.nan, the default); mark missing values "
            "as NaN before the pipeline"
        )
    statistics = imputer.statistics_
    if imputer.keep_empty_features:
        keep = np.arange(len(statistics))
    else:
        keep = np.flatnonzero(~_get_mask(statistics, np.nan))
    indicator = imputer.indicator_.features_ if imputer.add_indicator else ()
    step = Impute(
        fill=tuple(statistics.tolist()),
        keep=tuple(int(i) for i in keep),
        indicator=tuple(int(i) for i in indicator),
        as_object=imputer._fit_dtype.kind == "O",
    )
    return step, None


@register_board(OneHotEncoder)
def convert_one_hot_encoder(encoder: OneHotEncoder) -> tuple[OneHot, None]:
    probe = _probe(encoder)
    offsets = np.concatenate([[0], np.cumsum(encoder._n_features_outs)])
    columns = []
    for feature, categories in enumerate(encoder.categories_):
        block = probe[: len(categories), offsets[feature] : offsets[feature + 1]]
        hit = block.max(axis=1) > 0
        columns.append(
            tuple(int(c) for c in np.where(hit, offsets[feature] + block.argmax(axis=1), -1))
        )
    if encoder.handle_unknown == "error":
        unknown = [UNKNOWN_ERROR] * len(encoder.categories_)
    else:
        unknown = _unknown_columns(encoder, offsets)
    step = OneHot(
        categories=tuple(np.asarray(c) for c in encoder.categories_),
        columns=tuple(columns),
        unknown=tuple(unknown),
        width=int(offsets[-1]),
        warn_unknown=encoder.handle_unknown == "warn",
    )
    return step, None


@register_board(OrdinalEncoder)
def convert_ordinal_encoder(encoder: OrdinalEncoder) -> tuple[Ordinal, None]:
    probe = _probe(encoder)
    unknown = None if encoder.handle_unknown == "error" else float(encoder.unknown_value)
    step = Ordinal(
        categories=tuple(np.asarray(c) for c in encoder.categories_),
        codes=tuple(
            tuple(float(v) for v in probe[: len(c), feature])
            for feature, c in enumerate(encoder.categories_)
        ),
        unknown=tuple(unknown for _ in encoder.categories_),
    )
    return step, None


def _probe(encoder: Any) -> np.ndarray:
    """The encoder's dense output on rows where feature j takes its r-th category in row r
    (its last one in later rows)."""
    n_rows = max(len(c) for c in encoder.categories_)
    rows = np.empty((n_rows, len(encoder.categories_)), dtype=object)
    for feature, categories in enumerate(encoder.categories_):
        values = categories.tolist()
        rows[:, feature] = [values[min(r, len(values) - 1)] for r in range(n_rows)]
    return _dense_transform(encoder, rows)


def _dense_transform(encoder: Any, rows: np.ndarray) -> np.ndarray:
    """``encoder.transform(rows)`` as a dense float64 array, its warnings silenced: the
    probes are arrays on purpose (no feature names) and may hold unknown categories."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = encoder.transform(rows)
    return np.asarray(out.toarray() if hasattr(out, "toarray") else out, dtype=np.float64)


def _unknown_columns(encoder: OneHotEncoder, offsets: np.ndarray) -> list[int]:
    """The column the encoder sets for a category it never saw, per feature (UNKNOWN_ZEROS
    for none). Asked of the encoder, not derived from ``handle_unknown``: scikit-learn up to
    1.7 encodes 'warn' as all zeros, 1.8 and later as the infrequent category."""
    row = np.empty((1, len(encoder.categories_)), dtype=object)
    for feature, categories in enumerate(encoder.categories_):
        row[0, feature] = _unseen(categories.tolist())
    dense = _dense_transform(encoder, row)[0]
    unknown = []
    for feature in range(len(encoder.categories_)):
        hits = np.flatnonzero(dense[offsets[feature] : offsets[feature + 1]])
        unknown.append(int(offsets[feature] + hits[0]) if hits.size else UNKNOWN_ZEROS)
    return unknown


def _unseen(categories: list[Any]) -> Any:
    """A value of the categories' kind (string or number) that is none of them."""
    values = [v for v in categories if v is not None and not _is_nan(v)]
    if values and all(isinstance(v, str) for v in values):
        unseen = "unseen"
        while unseen in values:
            unseen += "_"
        return unseen
    return max(values) + 1 if values else "unseen"


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value
