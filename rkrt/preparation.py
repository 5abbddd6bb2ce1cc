"""Board-side feature preparation: what a scikit-learn pipeline does before its numbers.

Column selection (ColumnTransformer), imputation (SimpleImputer) and category encoding
(OneHotEncoder, OrdinalEncoder) take strings, missing values and DataFrames, which no NPU
op does; `emit` describes them in the model's metadata and this module runs them in numpy
before the NPU call, with scikit-learn's semantics and without scikit-learn. Everything
affine after them (scalers, PCA) is folded into the model's first layer.

The description is JSON (``"format": "rkrt-preparation"``, ``"schema_version": 1``),
never a pickle: a reader rejects other formats and versions, unknown or missing keys and
inconsistent widths with a ValueError.

Values in JSON: categories and fill values are JSON scalars; None is ``null``, and NaN,
which JSON lacks, is ``{"nan": true}``. A category list records the numpy kind of the
fitted ``categories_`` array ("int", "float", "bool", "str" or "object"), because
scikit-learn matches numbers numerically and everything else by Python equality.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np

from .inputs import check_feature_names, feature_names, refuse_sparse, require_2d

FORMAT = "rkrt-preparation"
SCHEMA_VERSION = 1

# A one-hot feature's answer to an unknown category: an output column, no column, or raise.
UNKNOWN_ZEROS = -1
UNKNOWN_ERROR = -2

_DTYPES = {"int": np.int64, "float": np.float64, "bool": np.bool_, "str": np.str_, "object": object}
_KINDS = {"i": "int", "u": "int", "f": "float", "b": "bool", "U": "str", "S": "str", "O": "object"}

Columns = list  # of 1-D numpy arrays, one per feature, each with its own dtype


# --- values in JSON ------------------------------------------------------------------
def encode_value(value: Any) -> Any:
    """A category or fill value as JSON (numpy scalars as Python ones, NaN as an object)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return {"nan": True}
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, float) and math.isinf(value):
            raise ValueError(f"cannot describe the infinite value {value!r}")
        return value
    raise ValueError(f"cannot describe the value {value!r} ({type(value).__name__}) in JSON")


def decode_value(data: Any) -> Any:
    if isinstance(data, float) and math.isinf(data):
        raise ValueError(
            f"a value must be finite, got {data!r} (a JSON number beyond the float64 range, "
            "such as 1e400, reads as infinity)"
        )
    if isinstance(data, dict):
        if data != {"nan": True}:
            raise ValueError(f"a value is a JSON scalar or {{'nan': true}}, got {data!r}")
        return math.nan
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    raise ValueError(f"a value is a JSON scalar or {{'nan': true}}, got {data!r}")


def encode_categories(categories: np.ndarray) -> dict[str, Any]:
    kind = _KINDS.get(categories.dtype.kind)
    if kind is None:
        raise ValueError(f"categories of dtype {categories.dtype} cannot be described")
    return {"dtype": kind, "values": [encode_value(v) for v in categories.tolist()]}


def decode_categories(data: Any) -> np.ndarray:
    _keys(data, ("dtype", "values"), "categories")
    kind, values = data["dtype"], data["values"]
    if (
        not isinstance(kind, str)
        or kind not in _DTYPES
        or not isinstance(values, list)
        or not values
    ):
        raise ValueError(f"categories need a dtype in {sorted(_DTYPES)} and values, got {data!r}")
    decoded = [decode_value(v) for v in values]
    if kind == "object":
        array = np.empty(len(decoded), dtype=object)
        array[:] = decoded
        return array
    try:
        return np.asarray(decoded, dtype=_DTYPES[kind])
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"categories {values!r} are not of dtype {kind}") from None


# --- steps ---------------------------------------------------------------------------
def category_index(values: np.ndarray, categories: np.ndarray) -> np.ndarray:
    """Position of each value in `categories`, -1 where absent (scikit-learn's matching).

    Numeric columns match numerically (1 == 1.0, NaN matches a NaN category); other
    columns (strings, objects, bools) by Python equality, None and NaN each matching
    only themselves.
    """
    if values.dtype.kind in "iuf":
        if categories.dtype.kind not in "iufb":
            return np.full(len(values), -1, dtype=np.intp)
        cats = categories.astype(np.float64)
        vals = values.astype(np.float64)
        where = np.searchsorted(cats, vals)  # numeric categories are sorted, NaN last
        inside = np.minimum(where, len(cats) - 1)
        found = (where < len(cats)) & (cats[inside] == vals)
        nan_index = len(cats) - 1 if np.isnan(cats[-1]) else -1
        index = np.where(found, inside, -1)
        if nan_index >= 0:
            index[np.isnan(vals)] = nan_index
        return index.astype(np.intp)
    lookup: dict[Any, int] = {}
    none_index = nan_index = -1
    for i, category in enumerate(categories.tolist()):
        if category is None:
            none_index = i
        elif isinstance(category, float) and math.isnan(category):
            nan_index = i
        else:
            lookup.setdefault(category, i)
    index = np.empty(len(values), dtype=np.intp)
    for row, value in enumerate(values.tolist()):
        if value is None:
            index[row] = none_index
        elif isinstance(value, float) and math.isnan(value):
            index[row] = nan_index
        else:
            try:
                index[row] = lookup.get(value, -1)
            except TypeError:  # unhashable
                index[row] = -1
    return index


def _raise_unknown(values: np.ndarray, index: np.ndarray, feature: int) -> None:
    unknown = list(dict.fromkeys(values[index < 0].tolist()))
    raise ValueError(f"Found unknown categories {unknown} in column {feature} during transform")


def _is_missing(column: np.ndarray) -> np.ndarray:
    """scikit-learn's mask of NaN (missing_values=np.nan): None is a value, not missing."""
    if column.dtype.kind == "f":
        return np.isnan(column)
    if column.dtype.kind == "O":
        return np.array([v != v for v in column.tolist()], dtype=bool)
    return np.zeros(len(column), dtype=bool)


@dataclass(frozen=True)
class Impute:
    """SimpleImputer(missing_values=np.nan): NaN replaced by the fitted statistic.

    `keep` lists the features that stay (scikit-learn drops features without a fitted
    statistic), `indicator` the features whose missing mask is appended (add_indicator),
    `as_object` whether the imputer was fitted on object data (else it computes in float).
    """

    fill: tuple[Any, ...]
    keep: tuple[int, ...]
    indicator: tuple[int, ...]
    as_object: bool

    @property
    def n_in(self) -> int:
        return len(self.fill)

    @property
    def n_out(self) -> int:
        return len(self.keep) + len(self.indicator)

    def apply(self, columns: Columns) -> Columns:
        if self.as_object:
            columns = [np.asarray(c, dtype=object) for c in columns]
        else:
            columns = [_as_float(c, "SimpleImputer") for c in columns]
        masks = [_is_missing(c) for c in columns]
        imputed = []
        for feature in self.keep:
            column = columns[feature].copy()
            column[masks[feature]] = self.fill[feature]
            imputed.append(column)
        return imputed + [masks[feature].astype(np.float64) for feature in self.indicator]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "impute",
            "fill": [encode_value(v) for v in self.fill],
            "keep": list(self.keep),
            "indicator": list(self.indicator),
            "as_object": self.as_object,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Impute:
        _keys(data, ("kind", "fill", "keep", "indicator", "as_object"), "impute step")
        fill = tuple(decode_value(v) for v in _list(data, "fill"))
        step = cls(
            fill=fill,
            keep=_indices(data, "keep", len(fill)),
            indicator=_indices(data, "indicator", len(fill)),
            as_object=_bool(data, "as_object"),
        )
        if not step.as_object and not all(isinstance(v, (int, float)) for v in fill):
            raise ValueError("a numeric impute step needs numeric fill values")
        return step


class _ComparedAsJSON:
    """Equality by description: numpy category arrays have no plain ``==``."""

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.to_dict() == other.to_dict()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class OneHot(_ComparedAsJSON):
    """OneHotEncoder: per feature its categories, the output column of each (-1: none,
    for a dropped category) and what an unknown value gets (a column, UNKNOWN_ZEROS or
    UNKNOWN_ERROR). ``warn_unknown`` is handle_unknown='warn'."""

    categories: tuple[np.ndarray, ...]
    columns: tuple[tuple[int, ...], ...]
    unknown: tuple[int, ...]
    width: int
    warn_unknown: bool = False

    @property
    def n_in(self) -> int:
        return len(self.categories)

    @property
    def n_out(self) -> int:
        return self.width

    def apply(self, columns: Columns) -> Columns:
        n_rows = len(columns[0]) if columns else 0
        out = np.zeros((n_rows, self.width), dtype=np.float64)
        rows = np.arange(n_rows)
        with_unknown = []
        for feature, values in enumerate(columns):
            index = category_index(values, self.categories[feature])
            if (index < 0).any():
                if self.unknown[feature] == UNKNOWN_ERROR:
                    _raise_unknown(values, index, feature)
                with_unknown.append(feature)
            # The unknown value's column sits in the last slot.
            table = np.asarray(self.columns[feature] + (self.unknown[feature],), dtype=np.intp)
            target = table[index]
            hit = target >= 0
            out[rows[hit], target[hit]] = 1.0
        if with_unknown and self.warn_unknown:
            warnings.warn(
                f"Found unknown categories in columns {with_unknown} during transform. These "
                "unknown categories will be encoded as the infrequent category.",
                UserWarning,
                stacklevel=4,
            )
        return list(out.T)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "one_hot",
            "features": [
                {"categories": encode_categories(c), "columns": list(cols), "unknown": u}
                for c, cols, u in zip(self.categories, self.columns, self.unknown)
            ],
            "width": self.width,
            "warn_unknown": self.warn_unknown,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OneHot:
        _keys(data, ("kind", "features", "width", "warn_unknown"), "one_hot step")
        width = _count(data, "width")
        categories, columns, unknown = [], [], []
        for feature in _list(data, "features"):
            _keys(feature, ("categories", "columns", "unknown"), "one_hot feature")
            cats = decode_categories(feature["categories"])
            cols = _ints(feature, "columns", -1, width)
            if len(cols) != len(cats):
                raise ValueError("a one_hot feature needs one column per category")
            categories.append(cats)
            columns.append(cols)
            unknown.append(_int(feature, "unknown", UNKNOWN_ERROR, width))
        return cls(tuple(categories), tuple(columns), tuple(unknown), width,
                   _bool(data, "warn_unknown"))  # fmt: skip


@dataclass(frozen=True, eq=False)
class Ordinal(_ComparedAsJSON):
    """OrdinalEncoder: per feature its categories, the code of each (NaN allowed) and the
    code of an unknown value (None: raise)."""

    categories: tuple[np.ndarray, ...]
    codes: tuple[tuple[float, ...], ...]
    unknown: tuple[Optional[float], ...]

    @property
    def n_in(self) -> int:
        return len(self.categories)

    @property
    def n_out(self) -> int:
        return len(self.categories)

    def apply(self, columns: Columns) -> Columns:
        out = []
        for feature, values in enumerate(columns):
            index = category_index(values, self.categories[feature])
            unknown = self.unknown[feature]
            if unknown is None and (index < 0).any():
                _raise_unknown(values, index, feature)
            # The unknown value's code sits in the last slot (unused when unknowns raise).
            fallback = 0.0 if unknown is None else unknown
            table = np.asarray(self.codes[feature] + (fallback,), dtype=np.float64)
            out.append(table[index])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "ordinal",
            "features": [
                {
                    "categories": encode_categories(c),
                    "codes": [encode_value(v) for v in codes],
                    "unknown": None if u is None else encode_value(u),
                }
                for c, codes, u in zip(self.categories, self.codes, self.unknown)
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ordinal:
        _keys(data, ("kind", "features"), "ordinal step")
        categories, codes, unknown = [], [], []
        for feature in _list(data, "features"):
            _keys(feature, ("categories", "codes", "unknown"), "ordinal feature")
            cats = decode_categories(feature["categories"])
            values = tuple(_number(decode_value(v)) for v in _list(feature, "codes"))
            if len(values) != len(cats):
                raise ValueError("an ordinal feature needs one code per category")
            categories.append(cats)
            codes.append(values)
            raw = feature["unknown"]
            unknown.append(None if raw is None else _number(decode_value(raw)))
        return cls(tuple(categories), tuple(codes), tuple(unknown))


@dataclass(frozen=True)
class Standardize:
    """``(x - offset) * scale`` per column: what an int8 build adds last, so the values the
    runtime quantizes with one input scale share a range (emit folds the inverse into the
    model's first layer)."""

    offset: tuple[float, ...]
    scale: tuple[float, ...]

    @property
    def n_in(self) -> int:
        return len(self.offset)

    @property
    def n_out(self) -> int:
        return len(self.offset)

    def apply(self, columns: Columns) -> Columns:
        return [
            (_as_float(c, "the int8 input scaling") - o) * s
            for c, o, s in zip(columns, self.offset, self.scale)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "standardize", "offset": list(self.offset), "scale": list(self.scale)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Standardize:
        _keys(data, ("kind", "offset", "scale"), "standardize step")
        offset = tuple(_finite(v) for v in _list(data, "offset"))
        scale = tuple(_finite(v) for v in _list(data, "scale"))
        if len(offset) != len(scale):
            raise ValueError("a standardize step needs one offset and one scale per column")
        return cls(offset, scale)


@dataclass(frozen=True)
class Branch:
    """One ColumnTransformer entry: the input columns it takes and its steps (none:
    passthrough)."""

    columns: tuple[int, ...]
    steps: tuple[Step, ...]

    @property
    def n_out(self) -> int:
        return self.steps[-1].n_out if self.steps else len(self.columns)


@dataclass(frozen=True)
class Select:
    """ColumnTransformer: each branch's columns through its steps, outputs side by side
    (dropped columns are in no branch)."""

    n_in: int
    branches: tuple[Branch, ...]

    @property
    def n_out(self) -> int:
        return sum(b.n_out for b in self.branches)

    @property
    def used(self) -> tuple[int, ...]:
        """The input columns some branch reads."""
        return tuple(sorted({c for b in self.branches for c in b.columns}))

    def apply(self, columns: Columns) -> Columns:
        out: Columns = []
        for branch in self.branches:
            selected = [columns[c] for c in branch.columns]
            out.extend(_run(branch.steps, selected))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "select",
            "n_in": self.n_in,
            "branches": [
                {"columns": list(b.columns), "steps": [s.to_dict() for s in b.steps]}
                for b in self.branches
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Select:
        _keys(data, ("kind", "n_in", "branches"), "select step")
        n_in = _count(data, "n_in")
        branches = []
        for branch in _list(data, "branches"):
            _keys(branch, ("columns", "steps"), "select branch")
            steps = _steps(_list(branch, "steps"))
            columns = _indices(branch, "columns", n_in)
            _check_chain(len(columns), steps)
            branches.append(Branch(columns, steps))
        return cls(n_in, tuple(branches))


Step = Union[Impute, OneHot, Ordinal, Select, Standardize]
_STEP_KINDS: dict[str, Callable[[Mapping[str, Any]], Step]] = {
    "standardize": Standardize.from_dict,
    "impute": Impute.from_dict,
    "one_hot": OneHot.from_dict,
    "ordinal": Ordinal.from_dict,
    "select": Select.from_dict,
}


def _run(steps: Sequence[Step], columns: Columns) -> Columns:
    for step in steps:
        columns = step.apply(columns)
    return columns


# --- the whole preparation -------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Preparation(_ComparedAsJSON):
    """The steps from a user's X (DataFrame or array) to the model's float32 input.

    ``n_features_in``/``feature_names_in`` are the pipeline's (what X must have);
    ``n_features_out`` is the NPU model's input width. When the first step is a
    ColumnTransformer fitted on named columns, a DataFrame's columns are taken by name
    (extra columns are ignored, as scikit-learn does); otherwise X must have exactly the
    fitted columns.
    """

    n_features_in: int
    feature_names_in: Optional[tuple[str, ...]]
    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("a preparation needs at least one step")
        if self.feature_names_in is not None and len(self.feature_names_in) != self.n_features_in:
            raise ValueError("feature_names_in must name every input feature")
        _check_chain(self.n_features_in, self.steps)

    @property
    def n_features_out(self) -> int:
        return self.steps[-1].n_out

    def transform(self, X: Any, *, name: str = "Pipeline") -> np.ndarray:
        """X prepared: a C-contiguous float32 (n_rows, n_features_out) array.

        Raises ValueError as scikit-learn does: unknown categories where the encoder
        refuses them, missing or mismatching columns, non-numeric values left over.
        """
        columns = self._columns(X, name)
        out = _run(self.steps, columns)
        n_rows = len(columns[0]) if columns else 0
        result = np.empty((n_rows, len(out)), dtype=np.float32)
        with np.errstate(over="ignore"):
            for j, column in enumerate(out):
                result[:, j] = _as_float(column, name)
        return result

    def _columns(self, X: Any, name: str) -> Columns:
        """X as a list of 1-D columns, selected and checked as scikit-learn does."""
        refuse_sparse(X, name)
        first = self.steps[0]
        frame = hasattr(X, "columns") and hasattr(X, "iloc")
        if frame and isinstance(first, Select) and self.feature_names_in is not None:
            given = feature_names(X)
            needed = {self.feature_names_in[i] for i in first.used}
            missing = needed - set(given or ())
            if missing:
                raise ValueError(f"columns are missing: {missing}")
            return [
                _frame_column(X[n]) if i in first.used else None
                for i, n in enumerate(self.feature_names_in)
            ]
        if isinstance(first, Select):
            # Fitted on an array or given one: positions count, names only warn.
            given = feature_names(X)
            if (given is None) != (self.feature_names_in is None):
                check_feature_names(X, self.feature_names_in, name)
        else:
            check_feature_names(X, self.feature_names_in, name)
        if frame:
            columns = [_frame_column(X.iloc[:, j]) for j in range(X.shape[1])]
        else:
            array = _array(X, name)
            columns = list(array.T)
        if len(columns) != self.n_features_in:
            raise ValueError(
                f"X has {len(columns)} features, but {name} is expecting "
                f"{self.n_features_in} features as input."
            )
        return columns

    # --- JSON ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "n_features_in": self.n_features_in,
            "feature_names_in": (
                None if self.feature_names_in is None else list(self.feature_names_in)
            ),
            "steps": [s.to_dict() for s in self.steps],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Preparation:
        """Parse `to_dict`'s output; ValueError naming what is wrong."""
        if not isinstance(data, dict):
            raise ValueError(f"a preparation is a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise ValueError(f"preparation format is {data.get('format')!r}, expected {FORMAT!r}")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION or isinstance(version, bool):
            raise ValueError(
                f"preparation schema_version is {version!r}, this rkrt reads version "
                f"{SCHEMA_VERSION}; convert the model again with a matching emit, or upgrade rkrt"
            )
        _keys(data, ("format", "schema_version", "n_features_in", "feature_names_in", "steps"),
              "preparation")  # fmt: skip
        names = data["feature_names_in"]
        if names is not None and not (
            isinstance(names, list) and all(isinstance(n, str) for n in names)
        ):
            raise ValueError("preparation feature_names_in must be null or a list of strings")
        return cls(
            n_features_in=_count(data, "n_features_in"),
            feature_names_in=None if names is None else tuple(names),
            steps=_steps(_list(data, "steps")),
        )


# --- input conversion ------------------------------------------------------------------
def _frame_column(series: Any) -> np.ndarray:
    """A DataFrame column as numpy, pandas' nullable numbers as float with NaN."""
    dtype = getattr(series, "dtype", None)
    if getattr(dtype, "kind", "O") in "iufb" and not isinstance(dtype, np.dtype):
        # Int64/Float64/boolean extension arrays hold pd.NA; scikit-learn reads NaN.
        if getattr(series, "hasnans", False):
            return series.to_numpy(dtype=np.float64, na_value=np.nan)
        return series.to_numpy(dtype=dtype.numpy_dtype)
    return np.asarray(series)


def _array(X: Any, name: str) -> np.ndarray:
    array = np.asarray(X)
    if not hasattr(X, "dtype") and array.dtype.kind in "US":
        # A list mixing strings and numbers: keep each value's type, as scikit-learn does.
        array = np.asarray(X, dtype=object)
    require_2d(array, name)
    return array


def _as_float(column: np.ndarray, name: str) -> np.ndarray:
    try:
        return np.asarray(column, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{name} needs numbers here but got non-numeric values ({error}); encode such "
            "columns with OneHotEncoder or OrdinalEncoder in the pipeline"
        ) from None


# --- parsing helpers -------------------------------------------------------------------
def _keys(data: Any, keys: tuple[str, ...], what: str) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"a {what} is a JSON object, got {type(data).__name__}")
    missing = [k for k in keys if k not in data]
    unknown = sorted(set(data) - set(keys))
    if missing or unknown:
        raise ValueError(f"{what}: missing key(s) {missing}, unknown key(s) {unknown}")


def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data[key]
    if not isinstance(value, list):
        raise ValueError(f"{key} must be a list, got {value!r}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(data: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = data[key]
    if not _is_int(value) or not low <= value < high:
        raise ValueError(f"{key} must be an int in [{low}, {high}), got {value!r}")
    return value


def _ints(data: Mapping[str, Any], key: str, low: int, high: int) -> tuple[int, ...]:
    values = _list(data, key)
    if not all(_is_int(v) and low <= v < high for v in values):
        raise ValueError(f"{key} must hold ints in [{low}, {high}), got {values!r}")
    return tuple(values)


def _indices(data: Mapping[str, Any], key: str, n: int) -> tuple[int, ...]:
    return _ints(data, key, 0, n)


def _count(data: Mapping[str, Any], key: str) -> int:
    value = data[key]
    if not _is_int(value) or value < 0:
        raise ValueError(f"{key} must be a non-negative int, got {value!r}")
    return value


def _bool(data: Mapping[str, Any], key: str) -> bool:
    value = data[key]
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {value!r}")
    return value


def _number(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"a code must be a number or NaN, got {value!r}")
    return float(value)


def _finite(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return float(value)


def _steps(data: list[Any]) -> tuple[Step, ...]:
    steps = []
    for step in data:
        kind = step.get("kind") if isinstance(step, dict) else None
        if not isinstance(kind, str) or kind not in _STEP_KINDS:
            raise ValueError(f"a step's kind must be one of {sorted(_STEP_KINDS)}, got {kind!r}")
        steps.append(_STEP_KINDS[kind](step))
    return tuple(steps)


def _check_chain(width: int, steps: Sequence[Step]) -> None:
    for step in steps:
        if step.n_in != width:
            raise ValueError(
                f"a {type(step).__name__} step takes {step.n_in} columns, gets {width}"
            )
        width = step.n_out
