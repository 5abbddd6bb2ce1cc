"""Hostile files: truncated, corrupt and empty models, directories, unreadable paths, and
sidecars or custom strings that are wrong in every way. Each must give a clear error that names
the file and the problem; none may crash or leave anything open.

Unreadable paths: the suite runs as root, for whom chmod 000 does not block reading, so the
paths used are ones the kernel refuses to anyone (a dangling symlink, a file used as a
directory, a name longer than NAME_MAX, an embedded NUL).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import rkrt_support
from fake_rknnrt import Dense, FakeModel
from rkrt_support import inputs_for, tolerance

import rkrt
import rkrt.ort
from rkrt import sklearn as board
from rkrt.metadata import MetadataError, ModelMetadata, sidecar_path, write_sidecar

_rng = np.random.default_rng(8)
W1, B1 = _rng.normal(0, 0.5, (4, 8)).astype(np.float32), _rng.normal(0, 0.1, 8).astype(np.float32)
W2, B2 = _rng.normal(0, 0.4, (8, 3)).astype(np.float32), _rng.normal(0, 0.1, 3).astype(np.float32)


def _model(w1: np.ndarray = W1, custom_string: str = "") -> FakeModel:
    layers = [Dense(w1, B1, "relu"), Dense(W2, B2, "softmax")]
    return FakeModel(layers, dtype="float16", custom_string=custom_string)


MODEL = _model()
META = ModelMetadata(task="classifier", outputs="probabilities", n_features_in=4,
                     classes=(0, 1, 2), batch_sizes=(1,), estimator="MLPClassifier")  # fmt: skip
files_tried = {"truncated": 0, "corrupt": 0, "sidecars": 0}


def test_every_truncation_of_a_model_is_refused_naming_the_file(rt, tmp_path: Path) -> None:
    blob = MODEL.to_bytes()
    path = tmp_path / "cut.rknn"
    for n in range(1, len(blob)):
        path.write_bytes(blob[:n])
        with pytest.raises(rkrt.RKNNError) as info:
            rkrt.Session(path)
        assert info.value.symbol == "RKNN_ERR_MODEL_INVALID"
        assert str(path) in str(info.value) and "not a valid .rknn model" in str(info.value)
        files_tried["truncated"] += 1
    path.write_bytes(blob + b"\0")  # trailing garbage
    with pytest.raises(rkrt.RKNNError, match="cut.rknn: rknn_init"):
        rkrt.Session(path)
    assert rt.live() == rkrt_support.NO_LEAKS
    print(f"truncated models: {files_tried['truncated']}")


def test_an_onnx_model_is_named_as_one_with_the_way_to_convert_it(rt, tmp_path: Path) -> None:
    """What an onnxruntime user passes by habit: the refusal says it is ONNX, not "rebuild"."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )  # fmt: skip
    with_producer = helper.make_model(graph, producer_name="skl2onnx")
    without = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    serialised = [m.SerializeToString() for m in (with_producer, without)]
    assert serialised[0][2] != serialised[1][2]  # the field after ir_version differs
    path = tmp_path / "model.onnx"
    for blob in serialised:
        path.write_bytes(blob)
        for source in (path, blob, rkrt.ort.InferenceSession):
            with pytest.raises(rkrt.RKNNError) as info:
                if source is rkrt.ort.InferenceSession:
                    source(str(path))
                else:
                    rkrt.Session(source)
            assert info.value.symbol == "RKNN_ERR_MODEL_INVALID"
            assert "an ONNX model, not a .rknn one" in str(info.value)
            assert "python -m emit" in info.value.hint
            assert (str(path) in str(info.value)) is (source is not blob)
    # Anything else the runtime refuses keeps the usual hint, even starting with 0x08.
    for blob in (b"\x08\x07" + MODEL.to_bytes(), b"\x08\xff\x12" * 20, b"RKNN junk"):
        with pytest.raises(rkrt.RKNNError, match="not a valid .rknn model"):
            rkrt.Session(blob)
    assert not onnx.load_model_from_string(serialised[1]).HasField("producer_name")
    assert rt.live() == rkrt_support.NO_LEAKS


def test_corrupt_models_fail_clearly_or_run(rt, tmp_path: Path) -> None:
    """Flip bytes anywhere: a broken structure is refused naming the file; what still parses
    (a flipped weight or custom-string byte) opens and runs, deterministically, no crash."""
    blob = MODEL.to_bytes()
    rng = np.random.default_rng(0)
    path = tmp_path / "flipped.rknn"
    outcomes = {"refused": 0, "opened": 0}
    x = inputs_for(MODEL)[0]
    for _ in range(400):
        bad = bytearray(blob)
        for pos in rng.integers(0, len(bad), rng.integers(1, 4)):
            bad[pos] ^= int(rng.integers(1, 256))
        path.write_bytes(bad)
        files_tried["corrupt"] += 1
        try:
            s = rkrt.Session(path)
        except rkrt.RKNNError as exc:
            assert str(path) in str(exc) and exc.symbol == "RKNN_ERR_MODEL_INVALID"
            outcomes["refused"] += 1
            continue
        with s:
            if s.inputs[0].shape != x.shape:  # a flipped batch size: refused before C
                with pytest.raises(rkrt.ShapeError, match="accepts"):
                    s.run(x)
                outcomes["other shape"] = outcomes.get("other shape", 0) + 1
                continue
            first, again = s.run(x)[0].copy(), s.run(x)[0]
            assert first.shape == s.outputs[0].shape and first.dtype == np.float32
            np.testing.assert_array_equal(first, again)
        outcomes["opened"] += 1
    assert outcomes["refused"] > 0 and outcomes["opened"] > 0
    print(f"corrupt models: {outcomes}")


def test_a_flipped_weight_computes_the_flipped_model(rt, tmp_path: Path) -> None:
    """A weight is just a number to the runtime: the result is that of the changed model."""
    blob = MODEL.to_bytes()
    at = blob.find(W1.tobytes())
    assert at > 0
    rng = np.random.default_rng(1)
    x = inputs_for(MODEL)[0]
    path = tmp_path / "weights.rknn"
    for _ in range(50):
        k = int(rng.integers(0, W1.size))
        bad = bytearray(blob)
        bad[at + 4 * k + int(rng.integers(0, 4))] ^= 1 << int(rng.integers(0, 8))
        path.write_bytes(bad)
        w = W1.copy()
        w.flat[k] = np.frombuffer(bytes(bad[at + 4 * k : at + 4 * k + 4]), "<f4")[0]
        changed = _model(w)
        assert changed.to_bytes() == bytes(bad)
        with np.errstate(all="ignore"), rkrt.Session(path) as s:
            np.testing.assert_allclose(s.run(x)[0], changed.reference(x)[0],
                                       **tolerance("float16"), equal_nan=True)  # fmt: skip
        files_tried["corrupt"] += 1


@pytest.mark.parametrize("model", [b"", bytearray(), memoryview(b"")])
def test_empty_model_bytes_are_refused_before_c(rt, model: Any) -> None:
    # A size of 0 means "the buffer is a file path" to rknn_init: it must never see one.
    with pytest.raises(ValueError, match="the model bytes: the model is empty"):
        rkrt.Session(model)
    assert rt.calls("rknn_init") == 0


def test_empty_file_and_directory_name_the_path(rt, tmp_path: Path) -> None:
    empty = tmp_path / "empty.rknn"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=f"{empty}: the model is empty"):
        rkrt.Session(empty)
    before = rt.total_calls()
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        rkrt.Session(tmp_path)
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        board.load(tmp_path)
    assert rt.total_calls() == before


def _unreadable(tmp_path: Path) -> list[tuple[Any, type, str]]:
    dangling = tmp_path / "dangling.rknn"
    dangling.symlink_to(tmp_path / "gone.rknn")
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    return [
        (dangling, FileNotFoundError, "dangling.rknn"),
        (tmp_path / "missing.rknn", FileNotFoundError, "missing.rknn"),
        (plain / "model.rknn", NotADirectoryError, "plain/model.rknn"),
        (tmp_path / ("x" * 300 + ".rknn"), OSError, "File name too long"),
        (str(tmp_path / "nul\0.rknn"), ValueError, "null byte"),
    ]


def test_unreadable_paths_raise_oserror_naming_them(rt, tmp_path: Path) -> None:
    for path, error, text in _unreadable(tmp_path):
        with pytest.raises(error, match=text):
            rkrt.Session(path)
        with pytest.raises(error, match=text):
            board.load(path)
    assert rt.total_calls() == 0


# ---- sidecars and custom strings -----------------------------------------------------------


def _good_sidecar(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    path = tmp_path / "clf.rknn"
    MODEL.save(path)
    write_sidecar(path, META)
    return path, json.loads(Path(sidecar_path(path)).read_text())


def _edit(**changes: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda d: {**d, **changes}


def _drop(key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda d: {k: v for k, v in d.items() if k != key}


SIDECAR_DAMAGE: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "schema 2": (_edit(schema_version=2), "schema_version is 2"),
    "schema '1'": (_edit(schema_version="1"), "schema_version is '1'"),
    "schema true": (_edit(schema_version=True), "schema_version is True"),
    "other format": (_edit(format="onnx"), "format is 'onnx'"),
    "no task": (_drop("task"), "missing key.*task"),
    "no classes": (_drop("classes"), "missing key.*classes"),
    "no sha256": (_drop("sha256"), "missing key.*sha256"),
    "unknown key": (_edit(colour="red"), "unknown key.*colour"),
    "task int": (_edit(task=1), "task is 1"),
    "n_features str": (_edit(n_features_in="4"), "n_features_in must be a positive int"),
    "n_features bool": (_edit(n_features_in=True), "n_features_in must be a positive int"),
    "classes dict": (_edit(classes={"a": 1}), "needs a non-empty list of classes"),
    "classes mixed": (_edit(classes=[0, "1", 2]), "one kind"),
    "batch 0": (_edit(batch_sizes=[0]), "batch_sizes must be distinct positive ints"),
    "versions list": (_edit(versions=["1"]), "versions must map"),
    "sha256 short": (_edit(sha256="abc"), "sha256 must be 64 lowercase hex"),
    "sha256 other": (_edit(sha256="0" * 64), "sha256 .* belongs to another build"),
    "array": (lambda d: [d], "expected a JSON object, got list"),
    "features mismatch": (_edit(n_features_in=5), "metadata says 5 features"),
    "classes mismatch": (_edit(classes=[0, 1]), "lists 2 classes"),
}


@pytest.mark.parametrize("damage", SIDECAR_DAMAGE)
def test_damaged_sidecar_names_file_and_problem(rt, tmp_path: Path, damage: str) -> None:
    path, data = _good_sidecar(tmp_path)
    change, problem = SIDECAR_DAMAGE[damage]
    Path(sidecar_path(path)).write_text(json.dumps(change(data)))
    if damage.endswith("mismatch"):  # the sidecar is fine; the model is not what it describes
        data = change(data)
        data["sha256"] = None
        Path(sidecar_path(path)).write_text(json.dumps(data))
    with pytest.raises(MetadataError, match=problem) as info:
        board.load(path)
    assert str(path) in str(info.value)
    files_tried["sidecars"] += 1


@pytest.mark.parametrize(
    "text, problem",
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"null", "expected a JSON object, got NoneType"),
        (b'{"format": "rkrt-model", "schema_version": 1e400}', "schema_version is inf"),
        (b"[" * 100_000, "not valid JSON"),
    ],
)
def test_unparsable_sidecar_names_file(rt, tmp_path: Path, text: bytes, problem: str) -> None:
    path, _ = _good_sidecar(tmp_path)
    Path(sidecar_path(path)).write_bytes(text)
    with pytest.raises(MetadataError, match=problem) as info:
        board.load(path)
    assert sidecar_path(path) in str(info.value)
    files_tried["sidecars"] += 1


@pytest.mark.parametrize(
    "custom, problem",
    [
        ("not json {", "not valid JSON"),
        ("42", "expected a JSON object, got int"),
        ('{"format": "rkrt-model", "schema_version": 9}', "schema_version is 9"),
        ("   ", "custom string is empty"),
    ],
)
def test_custom_string_that_is_not_metadata(rt, tmp_path: Path, custom: str, problem: str) -> None:
    path = tmp_path / "self.rknn"
    _model(custom_string=custom).save(path)
    with pytest.raises(MetadataError, match=problem) as info:
        board.load(path)
    assert str(path) in str(info.value)


def test_good_files_still_work(rt, tmp_path: Path) -> None:
    path, _ = _good_sidecar(tmp_path)
    x = inputs_for(MODEL)[0]
    with board.load(path) as clf:
        np.testing.assert_allclose(clf.predict_proba(x), MODEL.reference(x)[0],
                                   **tolerance("float16"))  # fmt: skip
    os.remove(sidecar_path(path))
    with pytest.raises(MetadataError, match="custom string is empty"):
        board.load(path)
