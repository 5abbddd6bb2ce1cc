"""What a converted model means: the sidecar file and the .rknn custom string.

`emit` writes two descriptions of every model it converts:

* a sidecar ``MODEL.rknn.json`` (see :func:`sidecar_path`) holding every field of
  :class:`ModelMetadata` plus the sha256 of the .rknn it describes;
* a compact copy of the essentials in the .rknn's custom string, so a model is
  self-describing on a board even without its sidecar.

Both are JSON objects tagged with ``"format": "rkrt-model"`` and
``"schema_version": 1``. Readers reject any other format or version, missing or
unknown keys and wrong types with a :class:`MetadataError` naming the file and
the problem: a model whose meaning is misread gives plausible wrong answers,
which is worse than no answer.

Custom string budget: the runtime returns it in a 1024-byte C buffer, so the
UTF-8 JSON must be at most 1023 bytes. When the full description is longer,
optional parts are dropped in this order until it fits: ``verification``,
``versions``, ``feature_names_in``, ``estimator``, ``target_platform``. If the
essentials alone (format, schema_version, task, outputs, classes,
n_features_in, batch_sizes, quantization) do not fit, :meth:`to_custom_string`
raises. ``sha256`` never goes into the custom string (a file cannot contain
its own hash).

Sidecars written by scirknn (keys ``input_shape``, ``output_shape``,
``classes``, ``mode``) are read too. That format cannot tell a multilabel
classifier from a multiclass one, so scirknn classifiers are read as
binary/multiclass, exactly as scirknn itself treats them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Tuple, Union

import numpy as np

# PathLike and positive_int are re-exported: this module is all that emit takes from rkrt.
from .arguments import PathLike, positive_int  # noqa: F401
from .errors import Error

FORMAT = "rkrt-model"
# The .npz of an MLP's weights (emit.export_weights -> rkrt.weights_mlp).
WEIGHTS_FORMAT = "rkrt-mlp-weights/1"
SCHEMA_VERSION = 1
SIDECAR_SUFFIX = ".json"
CUSTOM_STRING_MAX_BYTES = 1023  # rknn_custom_string is char[1024], NUL included

TASKS = ("classifier", "multilabel", "regressor")
OUTPUTS = ("probabilities", "decision", "values")
QUANTIZATIONS = (None, "int8")

# Order in which optional parts leave the custom string when it is too long.
CUSTOM_STRING_DROP_ORDER = (
    "verification",
    "versions",
    "feature_names_in",
    "estimator",
    "target_platform",
)
_ESSENTIAL_KEYS = (
    "format",
    "schema_version",
    "task",
    "outputs",
    "classes",
    "n_features_in",
    "batch_sizes",
    "quantization",
)
_SIDECAR_KEYS = _ESSENTIAL_KEYS + CUSTOM_STRING_DROP_ORDER + ("sha256",)
_SCIRKNN_KEYS = ("input_shape", "output_shape", "mode")

Label = Union[bool, int, float, str]
_SEQUENCES = (list, tuple, np.ndarray)


class MetadataError(Error, ValueError):
    """A sidecar or custom string is missing, malformed or does not match its model."""


@dataclass(frozen=True)
class ModelMetadata:
    """The meaning of a converted model's inputs and outputs.

    ``classes`` is required for classifiers (binary and multiclass) and multilabel
    models and must be None for regressors. Labels may be bools, ints, floats or
    strings (numpy scalars are accepted and stored as Python values); one kind
    per model, as scikit-learn's ``classes_``.
    """

    task: str
    outputs: str
    n_features_in: int
    classes: Optional[Tuple[Label, ...]] = None
    feature_names_in: Optional[Tuple[str, ...]] = None
    batch_sizes: Tuple[int, ...] = (1,)
    quantization: Optional[str] = None
    target_platform: Optional[str] = None
    estimator: Optional[str] = None
    versions: Mapping[str, str] = field(default_factory=dict)
    sha256: Optional[str] = None
    verification: Optional[Mapping[str, Any]] = None

    def __post_init__(self) -> None:
        # Normalise container types first so validation sees plain Python values.
        for name in ("classes", "feature_names_in", "batch_sizes"):
            value = getattr(self, name)
            if isinstance(value, _SEQUENCES):
                object.__setattr__(self, name, tuple(_python_scalar(v) for v in value))
        object.__setattr__(self, "n_features_in", _python_scalar(self.n_features_in))
        # Copies, so the caller's dicts cannot change a frozen instance afterwards.
        if isinstance(self.versions, Mapping):
            object.__setattr__(self, "versions", dict(self.versions))
        if isinstance(self.verification, Mapping):
            figures = {k: _python_scalar(v) for k, v in self.verification.items()}
            object.__setattr__(self, "verification", figures)
        problem = _problem(self)
        if problem:
            raise MetadataError(f"invalid model metadata: {problem}")

    # --- sidecar -----------------------------------------------------------------
    def to_json(self) -> str:
        """The sidecar text: every field, indented, keys in schema order."""
        return json.dumps(self._as_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: Union[str, bytes], *, source: str = "<string>") -> ModelMetadata:
        """Parse a sidecar (rkrt-model, or scirknn's format); `source` names it in errors."""
        data = _load_object(text, source)
        if "format" not in data and all(k in data for k in _SCIRKNN_KEYS):
            return _from_scirknn(data, source)
        return _from_dict(data, source, required=_SIDECAR_KEYS)

    # --- custom string -----------------------------------------------------------
    def to_custom_string(self) -> str:
        """Compact JSON of the essentials (and what else fits in 1023 bytes)."""
        # Absent optional keys read back as their defaults, so nulls are not spent on.
        data = {
            k: v
            for k, v in self._as_dict().items()
            if k in _ESSENTIAL_KEYS or (k != "sha256" and v not in (None, {}))
        }
        for key in (None,) + CUSTOM_STRING_DROP_ORDER:
            data.pop(key, None)
            text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            if len(text.encode("utf-8")) <= CUSTOM_STRING_MAX_BYTES:
                return text
        raise MetadataError(
            f"the model's essential metadata takes {len(text.encode('utf-8'))} bytes but the "
            f"custom string holds at most {CUSTOM_STRING_MAX_BYTES}: too many or too long "
            f"class labels ({len(self.classes or ())} classes). Shorten the labels, or leave "
            f"the custom string empty and always ship the sidecar (MODEL.rknn{SIDECAR_SUFFIX})."
        )

    @classmethod
    def from_custom_string(cls, text: str, *, source: str = "<custom string>") -> ModelMetadata:
        """Parse what :meth:`to_custom_string` wrote; `source` names the model in errors."""
        if not text.strip():
            raise MetadataError(
                f"{source}: the custom string is empty, so the model does not describe itself; "
                f"put its sidecar (MODEL.rknn{SIDECAR_SUFFIX}) next to it"
            )
        data = _load_object(text, source)
        return _from_dict(data, source, required=_ESSENTIAL_KEYS)

    def _as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "task": self.task,
            "outputs": self.outputs,
            "classes": None if self.classes is None else list(self.classes),
            "n_features_in": self.n_features_in,
            "batch_sizes": list(self.batch_sizes),
            "quantization": self.quantization,
            "verification": None if self.verification is None else dict(self.verification),
            "versions": dict(self.versions),
            "feature_names_in": (
                None if self.feature_names_in is None else list(self.feature_names_in)
            ),
            "estimator": self.estimator,
            "target_platform": self.target_platform,
            "sha256": self.sha256,
        }


# --- files -------------------------------------------------------------------------
def sidecar_path(model_path: PathLike) -> str:
    """Where a model's sidecar lives: the model's path plus ``.json`` (as scirknn)."""
    return os.fspath(model_path) + SIDECAR_SUFFIX


def file_sha256(path: PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_sidecar(model_path: PathLike, metadata: ModelMetadata) -> str:
    """Write `metadata` (with the sha256 of the model file filled in) next to the model.

    Returns the sidecar's path.
    """
    path = sidecar_path(model_path)
    stamped = dataclasses.replace(metadata, sha256=file_sha256(model_path))
    with open(path, "w", encoding="utf-8") as f:
        f.write(stamped.to_json())
    return path


def read_sidecar(model_path: PathLike) -> ModelMetadata:
    """Read and check a model's sidecar.

    Raises FileNotFoundError when there is none, and MetadataError when it is
    malformed or records a sha256 different from the model file's (the sidecar
    belongs to another build of the model).
    """
    path = sidecar_path(model_path)
    with open(path, "rb") as f:
        text = f.read()
    metadata = ModelMetadata.from_json(text, source=path)
    if metadata.sha256 is not None:
        actual = file_sha256(model_path)
        if actual != metadata.sha256:
            raise MetadataError(
                f"{path}: sidecar records sha256 {metadata.sha256} but {os.fspath(model_path)} "
                f"has sha256 {actual}: the sidecar belongs to another build of the model. "
                "Copy the .rknn and its .json from the same conversion."
            )
    return metadata


# --- parsing and validation --------------------------------------------------------
def _python_scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _load_object(text: Union[str, bytes], source: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # deep nesting recurses
        raise MetadataError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise MetadataError(f"{source}: expected a JSON object, got {type(data).__name__}")
    return data


def _from_dict(data: dict[str, Any], source: str, *, required: tuple[str, ...]) -> ModelMetadata:
    fmt = data.get("format")
    if fmt != FORMAT:
        raise MetadataError(
            f"{source}: format is {fmt!r}, expected {FORMAT!r}: not a model description "
            "written by emit"
        )
    version = data.get("schema_version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise MetadataError(
            f"{source}: schema_version is {version!r}, this rkrt reads version "
            f"{SCHEMA_VERSION}; convert the model again with a matching emit, or upgrade rkrt"
        )
    missing = [k for k in required if k not in data]
    if missing:
        raise MetadataError(f"{source}: missing key(s) {', '.join(missing)}")
    unknown = sorted(set(data) - set(_SIDECAR_KEYS))
    if unknown:
        raise MetadataError(
            f"{source}: unknown key(s) {', '.join(unknown)} for schema version {SCHEMA_VERSION}"
        )
    fields = {k: v for k, v in data.items() if k not in ("format", "schema_version")}
    if fields.get("versions") is None:
        fields.pop("versions", None)
    try:
        return ModelMetadata(**fields)
    except MetadataError as exc:
        raise MetadataError(f"{source}: {exc}") from None


def _from_scirknn(data: dict[str, Any], source: str) -> ModelMetadata:
    mode = data["mode"]
    input_shape, output_shape = data["input_shape"], data["output_shape"]
    for name, shape in (("input_shape", input_shape), ("output_shape", output_shape)):
        if not (isinstance(shape, list) and len(shape) == 2 and _is_int(shape[1])):
            raise MetadataError(f"{source}: scirknn {name} must be [batch, width], got {shape!r}")
    batch = input_shape[0]
    if batch is not None and not _is_int(batch):
        raise MetadataError(f"{source}: scirknn input_shape batch must be an int or null")
    if mode == "classifier":
        classes = data.get("classes")
        if not isinstance(classes, list):
            raise MetadataError(f"{source}: scirknn classifier sidecar has no 'classes' list")
        width = output_shape[1]
        if width != len(classes) and not (len(classes) == 2 and width == 1):
            raise MetadataError(
                f"{source}: output width {width} does not fit {len(classes)} classes"
            )
        task, outputs, estimator = "classifier", "probabilities", "MLPClassifier"
    elif mode == "regressor":
        classes, outputs, task, estimator = None, "values", "regressor", "MLPRegressor"
    else:
        raise MetadataError(
            f"{source}: scirknn mode is {mode!r}, expected 'classifier' or 'regressor'"
        )
    try:
        return ModelMetadata(
            task=task,
            outputs=outputs,
            n_features_in=input_shape[1],
            classes=None if classes is None else tuple(classes),
            # scirknn allowed a null batch, which the toolkit then compiled as 1.
            batch_sizes=(1 if batch is None else batch,),
            estimator=estimator,
            versions={"format": "scirknn"},
        )
    except MetadataError as exc:
        raise MetadataError(f"{source}: {exc}") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _label_kind(value: Any) -> Optional[str]:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float" if math.isfinite(value) else None
    if isinstance(value, str):
        return "str"
    return None


def _problem(m: ModelMetadata) -> Optional[str]:
    """The first thing wrong with `m`, or None."""
    if m.task not in TASKS:
        return f"task is {m.task!r}, expected one of {', '.join(TASKS)}"
    if m.outputs not in OUTPUTS:
        return f"outputs is {m.outputs!r}, expected one of {', '.join(OUTPUTS)}"
    if (m.task == "regressor") != (m.outputs == "values"):
        return f"outputs {m.outputs!r} does not fit task {m.task!r}"
    if not _is_int(m.n_features_in) or m.n_features_in < 1:
        return f"n_features_in must be a positive int, got {m.n_features_in!r}"
    if m.task == "regressor":
        if m.classes is not None:
            return "a regressor has no classes; classes must be null"
    else:
        if not isinstance(m.classes, tuple) or not m.classes:
            return f"a {m.task} needs a non-empty list of classes, got {m.classes!r}"
        kinds = {_label_kind(c) for c in m.classes}
        if None in kinds or len(kinds) != 1:
            return (
                "classes must all be of one kind (bool, int, finite float or str), got "
                f"{sorted({type(c).__name__ for c in m.classes})}"
            )
        if len(set(m.classes)) != len(m.classes):
            return f"classes contain duplicates: {list(m.classes)!r}"
    if m.feature_names_in is not None and (
        not isinstance(m.feature_names_in, tuple)
        or len(m.feature_names_in) != m.n_features_in
        or not all(isinstance(n, str) for n in m.feature_names_in)
    ):
        return f"feature_names_in must be {m.n_features_in} strings, got {m.feature_names_in!r}"
    if (
        not isinstance(m.batch_sizes, tuple)
        or not m.batch_sizes
        or not all(_is_int(b) and b >= 1 for b in m.batch_sizes)
        or len(set(m.batch_sizes)) != len(m.batch_sizes)
    ):
        return f"batch_sizes must be distinct positive ints, got {m.batch_sizes!r}"
    if m.quantization not in QUANTIZATIONS:
        return f"quantization is {m.quantization!r}, expected null or 'int8'"
    for name in ("target_platform", "estimator"):
        value = getattr(m, name)
        if value is not None and not isinstance(value, str):
            return f"{name} must be a string or null, got {value!r}"
    if not isinstance(m.versions, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in m.versions.items()
    ):
        return f"versions must map names to version strings, got {m.versions!r}"
    if m.sha256 is not None and not (
        isinstance(m.sha256, str)
        and len(m.sha256) == 64
        and all(c in "0123456789abcdef" for c in m.sha256)
    ):
        return f"sha256 must be 64 lowercase hex digits or null, got {m.sha256!r}"
    if m.verification is not None:
        if not isinstance(m.verification, dict) or not all(
            isinstance(k, str) for k in m.verification
        ):
            return f"verification must be an object with string keys, got {m.verification!r}"
        try:
            json.dumps(m.verification, allow_nan=False)
        except (TypeError, ValueError) as exc:
            return f"verification must hold JSON values only ({exc})"
    return None
