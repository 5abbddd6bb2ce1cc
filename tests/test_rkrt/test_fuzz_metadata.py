"""Fuzzing the sidecar / custom-string parser (rkrt.metadata): only MetadataError may escape.

Two fuzzers: atheris (coverage-guided, scripts/fuzz_metadata.py) for a fixed number of runs in a
subprocess (libFuzzer ends its process), and hypothesis mutating valid documents structurally
(runs everywhere, also where atheris has no wheel).
"""

from __future__ import annotations

import importlib.util
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rkrt.metadata import MetadataError, ModelMetadata

REPO = Path(__file__).resolve().parents[2]
TARGET = REPO / "scripts" / "fuzz_metadata.py"
FUZZ_RUNS = 1_000_000
HAS_ATHERIS = importlib.util.find_spec("atheris") is not None


def _target() -> Any:
    spec = importlib.util.spec_from_file_location("fuzz_metadata", TARGET)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


needs_atheris = pytest.mark.skipif(
    not HAS_ATHERIS and platform.machine() != "x86_64",
    reason="atheris has wheels for Linux x86_64 only",
)


@needs_atheris
def test_atheris_finds_no_crash_in_a_fixed_number_of_runs(tmp_path: Path) -> None:
    # A fixed seed and run count make this gate reproducible: a crash here is a regression,
    # not luck. Open-ended exploration is scripts/reliability_full.py's (it found 1e400).
    runs = _target().fuzz(tmp_path, "-seed=1", f"-runs={FUZZ_RUNS}", timeout=600)
    assert runs >= FUZZ_RUNS
    print(f"atheris: {runs} executions, corpus {len(list((tmp_path / 'corpus').iterdir()))}")


@needs_atheris
def test_fuzz_target_accepts_hostile_inputs_and_reports_foreign_exceptions() -> None:
    target = _target()
    for data in (b"[" * 100_000, b'{"format":"rkrt-model","schema_version":1e999}', b"\xff",
                 json.dumps(target.SCIRKNN).encode()):  # fmt: skip
        target.one_input(data)

    def broken_parser(text: Any) -> ModelMetadata:
        raise KeyError("task")

    with pytest.raises(KeyError):  # the harness lets anything but MetadataError through
        target.check("{}", broken_parser)


# ---- hypothesis: structural mutations of valid documents ----------------------------------

VALID = [
    ModelMetadata(task="classifier", outputs="probabilities", n_features_in=3,
                  classes=("a", "b"), batch_sizes=(1, 4), feature_names_in=("x", "y", "z"),
                  versions={"emit": "0.1"}, verification={"ok": True}, sha256="f" * 64),
    ModelMetadata(task="regressor", outputs="values", n_features_in=2, quantization="int8"),
]  # fmt: skip
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),  # fmt: skip
    max_leaves=12,
)


@st.composite
def mutated_document(draw: Any) -> str:
    meta = draw(st.sampled_from(VALID))
    custom = draw(st.booleans())
    data = json.loads(meta.to_custom_string() if custom else meta.to_json())
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["set", "drop", "add"]))
        key = draw(st.sampled_from(sorted(data)))
        if action == "set":
            data[key] = draw(json_values)
        elif action == "drop":
            data.pop(key)
        else:
            data[draw(st.text(max_size=8))] = draw(json_values)
    return ("custom:" if custom else "") + json.dumps(data)


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(mutated_document())
def test_mutated_documents_parse_or_raise_metadata_error(doc: str) -> None:
    custom = doc.startswith("custom:")
    text = doc.removeprefix("custom:")
    try:
        meta = (ModelMetadata.from_custom_string if custom else ModelMetadata.from_json)(text)
    except MetadataError as exc:
        assert str(exc).startswith("<")  # names its source ("<string>" / "<custom string>")
        return
    assert ModelMetadata.from_json(meta.to_json()) == meta


# ---- the preparation: mutations anywhere inside its nested description ----------------------
def _prepared_metadata() -> ModelMetadata:
    from rkrt.metadata import Branch, Impute, OneHot, Ordinal, Preparation, Select

    impute = Impute(fill=(1.5, "a"), keep=(0, 1), indicator=(0,), as_object=True)
    one_hot = OneHot(
        categories=(np.array(["a", "b"], dtype=object), np.array([1.0, np.nan])),
        columns=((0, -1), (1, 2)),
        unknown=(-1, -2),
        width=3,
    )
    ordinal = Ordinal(categories=(np.array([True, False]),), codes=((0.0, np.nan),),
                      unknown=(-1.0,))  # fmt: skip
    select = Select(n_in=3, branches=(Branch((0, 1), (impute,)), Branch((2,), (ordinal,))))
    preparation = Preparation(n_features_in=3, feature_names_in=("x", "y", "z"),
                              steps=(select, Select(4, (Branch((0, 1), (one_hot,)),))))  # fmt: skip
    return ModelMetadata(task="regressor", outputs="values", n_features_in=3,
                         feature_names_in=("x", "y", "z"), preparation=preparation)  # fmt: skip


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, prefix + (key,))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += _paths(inner, prefix + (index,))
    return found


@st.composite
def mutated_preparation(draw: Any) -> str:
    data = json.loads(_prepared_metadata().to_json())
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(data["preparation"])[1:]))
        parent = data["preparation"]
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) or not isinstance(parent, dict):
            parent[path[-1]] = draw(json_values)
        else:
            parent.pop(path[-1])
    return json.dumps(data)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(mutated_preparation())
def test_mutated_preparations_parse_or_raise_metadata_error(doc: str) -> None:
    try:
        meta = ModelMetadata.from_json(doc)
    except MetadataError as exc:
        assert str(exc).startswith("<string>")
        return
    assert ModelMetadata.from_json(meta.to_json()) == meta


def _at(data: Any, path: tuple) -> Any:
    for key in path:
        data = data[key]
    return data


@pytest.mark.parametrize("number", ["1e400", "-1e400", "Infinity", "NaN"])
def test_every_scalar_set_to_a_non_finite_number_parses_or_raises(number: str) -> None:
    """Found by atheris: a category of 1e400 was accepted, then could not be written back."""
    data = json.loads(_prepared_metadata().to_json())
    data["verification"] = {"max_abs_diff": 0.5, "ok": True}
    leaves = [p for p in _paths(data)[1:] if not isinstance(_at(data, p), (dict, list))]
    assert len(leaves) > 30
    fill = ("preparation", "steps", 0, "branches", 0, "steps", 0, "fill", 0)
    assert fill in leaves
    for path in leaves:
        doc = json.loads(json.dumps(data))
        _at(doc, path[:-1])[path[-1]] = "@@"
        try:
            meta = ModelMetadata.from_json(json.dumps(doc).replace('"@@"', number))
        except MetadataError as exc:
            assert str(exc).startswith("<string>"), exc
            assert path != fill or "must be finite" in str(exc), exc
            continue
        assert number == "NaN" or path != fill, "an infinite fill value was accepted"
        assert ModelMetadata.from_json(meta.to_json()) == meta, path
