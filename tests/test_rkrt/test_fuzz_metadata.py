"""Fuzzing the sidecar / custom-string parser (rkrt.metadata): only MetadataError may escape.

Two fuzzers: atheris (coverage-guided, scripts/fuzz_metadata.py) for a bounded time in a
subprocess (libFuzzer ends its process), and hypothesis mutating valid documents structurally
(runs everywhere, also where atheris has no wheel).
"""

from __future__ import annotations

import importlib.util
import json
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rkrt.metadata import MetadataError, ModelMetadata

REPO = Path(__file__).resolve().parents[2]
TARGET = REPO / "scripts" / "fuzz_metadata.py"
FUZZ_SECONDS = 20
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
def test_atheris_finds_no_crash_in_bounded_time(tmp_path: Path) -> None:
    target = _target()
    corpus, dictionary = tmp_path / "corpus", tmp_path / "metadata.dict"
    target.write_seeds(corpus)
    target.write_dictionary(dictionary)
    result = subprocess.run(
        [sys.executable, str(TARGET), f"-max_total_time={FUZZ_SECONDS}", f"-dict={dictionary}",
         f"-artifact_prefix={tmp_path}/", "-print_final_stats=1", str(corpus)],
        capture_output=True, text=True, timeout=FUZZ_SECONDS + 120,
    )  # fmt: skip
    crashes = list(tmp_path.glob("crash-*"))
    assert result.returncode == 0 and not crashes, result.stderr[-4000:]
    runs = int(re.search(r"Done (\d+) runs", result.stderr).group(1))
    assert runs > 10_000
    print(f"atheris: {runs} executions in {FUZZ_SECONDS} s, corpus {len(list(corpus.iterdir()))}")


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
