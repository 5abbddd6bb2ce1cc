"""rkrt.metadata: the sidecar and custom-string schema, strict parsing, scirknn sidecars."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from rkrt.metadata import (
    CUSTOM_STRING_DROP_ORDER,
    CUSTOM_STRING_MAX_BYTES,
    FORMAT,
    SCHEMA_VERSION,
    MetadataError,
    ModelMetadata,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)


def classifier(**overrides) -> ModelMetadata:
    fields = dict(
        task="classifier",
        outputs="probabilities",
        n_features_in=4,
        classes=(0, 1, 2),
        feature_names_in=("a", "b", "c", "d"),
        batch_sizes=(1, 8, 32),
        quantization="int8",
        target_platform="rk3588",
        estimator="MLPClassifier",
        versions={"scikit-learn": "1.9.1", "emit": "0.1.0"},
        sha256="0" * 64,
        verification={"max_abs_error": 0.004, "label_agreement": 1.0},
    )
    fields.update(overrides)
    return ModelMetadata(**fields)


def sidecar_dict(**overrides) -> dict:
    data = json.loads(classifier().to_json())
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    "classes, kind",
    [
        ([3, 1, 7], int),
        (["setosa", "versicolor", "virginica"], str),
        ([False, True], bool),
        ([0.5, 1.0, 2.25], float),
        (np.array([2, 5], dtype=np.int64), int),
        (np.array([0, 1], dtype=np.uint8), int),
        (np.array(["no", "yes"]), str),
        (np.array([False, True]), bool),
        ([np.float32(0.5), np.float32(1.5)], float),
        (["ünïcode", "標籤"], str),
    ],
)
def test_classes_round_trip_exactly(classes, kind):
    meta = classifier(classes=classes)
    expected = [c.item() if isinstance(c, np.generic) else c for c in classes]
    for parsed in (
        ModelMetadata.from_json(meta.to_json()),
        ModelMetadata.from_custom_string(meta.to_custom_string()),
    ):
        assert list(parsed.classes) == expected
        assert all(type(c) is kind for c in parsed.classes)
    assert ModelMetadata.from_json(meta.to_json()) == meta


def test_sidecar_round_trip_keeps_every_field():
    meta = classifier()
    text = meta.to_json()
    data = json.loads(text)
    assert data["format"] == FORMAT and data["schema_version"] == SCHEMA_VERSION
    assert ModelMetadata.from_json(text) == meta


def test_regressor_has_no_classes():
    meta = ModelMetadata(task="regressor", outputs="values", n_features_in=10)
    assert ModelMetadata.from_json(meta.to_json()) == meta
    with pytest.raises(MetadataError, match="regressor has no classes"):
        ModelMetadata(task="regressor", outputs="values", n_features_in=10, classes=(1, 2))


def test_numpy_scalars_accepted_on_input():
    meta = classifier(n_features_in=np.int64(4), batch_sizes=np.array([1, 8]))
    assert type(meta.n_features_in) is int
    assert meta.batch_sizes == (1, 8) and all(type(b) is int for b in meta.batch_sizes)
    assert ModelMetadata.from_json(meta.to_json()) == meta


def test_caller_dicts_do_not_alias():
    versions = {"emit": "0.1.0"}
    meta = classifier(versions=versions)
    versions["emit"] = "changed"
    assert meta.versions["emit"] == "0.1.0"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(task="clustering"), "task is 'clustering'"),
        (dict(outputs="logits"), "outputs is 'logits'"),
        (dict(outputs="values"), "does not fit task"),
        (dict(task="regressor", outputs="probabilities", classes=None), "does not fit task"),
        (dict(classes=()), "non-empty list of classes"),
        (dict(classes=None), "non-empty list of classes"),
        (dict(classes=(1, "a")), "one kind"),
        (dict(classes=(1, True)), "one kind"),
        (dict(classes=(1.0, float("nan"))), "one kind"),
        (dict(classes=(1, 1)), "duplicates"),
        (dict(n_features_in=0), "n_features_in"),
        (dict(n_features_in=4.0), "n_features_in"),
        (dict(n_features_in=True), "n_features_in"),
        (dict(feature_names_in=("a", "b")), "feature_names_in"),
        (dict(feature_names_in=(1, 2, 3, 4)), "feature_names_in"),
        (dict(batch_sizes=()), "batch_sizes"),
        (dict(batch_sizes=(0, 8)), "batch_sizes"),
        (dict(batch_sizes=(8, 8)), "batch_sizes"),
        (dict(batch_sizes=8), "batch_sizes"),
        (dict(quantization="int4"), "quantization"),
        (dict(target_platform=3588), "target_platform"),
        (dict(versions={"emit": 1}), "versions"),
        (dict(sha256="abc"), "sha256"),
        (dict(sha256="A" * 64), "sha256"),
        (dict(verification={"err": float("inf")}), "verification"),
        (dict(verification={"err": object()}), "verification"),
    ],
)
def test_invalid_fields_rejected(overrides, message):
    with pytest.raises(MetadataError, match=message):
        classifier(**overrides)


@pytest.mark.parametrize(
    "data, message",
    [
        (sidecar_dict(format="scirknn"), "format is 'scirknn', expected 'rkrt-model'"),
        (sidecar_dict(schema_version=2), "schema_version is 2, this rkrt reads version 1"),
        (sidecar_dict(schema_version="1"), "schema_version is '1'"),
        (sidecar_dict(extra=1), "unknown key"),
        (sidecar_dict(n_features_in="4"), "n_features_in must be a positive int"),
        (sidecar_dict(classes="012"), "classes"),
        (sidecar_dict(classes={"0": 1}), "classes"),
        (sidecar_dict(batch_sizes=[1, -8]), "batch_sizes"),
        (sidecar_dict(task=None), "task is None"),
    ],
)
def test_bad_sidecar_names_source_and_problem(data, message):
    with pytest.raises(MetadataError, match=message) as info:
        ModelMetadata.from_json(json.dumps(data), source="/models/m.rknn.json")
    assert str(info.value).startswith("/models/m.rknn.json: ")


@pytest.mark.parametrize("key", ["task", "classes", "estimator", "sha256", "verification"])
def test_sidecar_missing_key(key):
    data = sidecar_dict()
    del data[key]
    with pytest.raises(MetadataError, match=f"m.json: missing key.*{key}"):
        ModelMetadata.from_json(json.dumps(data), source="m.json")


@pytest.mark.parametrize("text", ["", "{not json", "[1, 2]", "null", b"\xff\xfe"])
def test_non_json_or_non_object_rejected(text):
    with pytest.raises(MetadataError, match="^m.json: "):
        ModelMetadata.from_json(text, source="m.json")


def test_custom_string_is_compact_and_omits_sha():
    meta = classifier()
    text = meta.to_custom_string()
    assert " " not in text and "\n" not in text
    assert "sha256" not in text
    parsed = ModelMetadata.from_custom_string(text)
    assert parsed == classifier(sha256=None)


def test_custom_string_drops_optional_parts_in_documented_order():
    # Each step adds one more oversized optional part; the ones later in the drop
    # order must survive as long as dropping earlier ones suffices.
    long = "x" * 900
    meta = classifier(
        verification={"note": long},
        versions={"emit": long},
        feature_names_in=(long, "b", "c", "d"),
    )
    parsed = ModelMetadata.from_custom_string(meta.to_custom_string())
    dropped = [k for k in CUSTOM_STRING_DROP_ORDER if getattr(parsed, k) != getattr(meta, k)]
    assert dropped == ["verification", "versions", "feature_names_in"]
    assert parsed.estimator == "MLPClassifier" and parsed.target_platform == "rk3588"
    # Only what had to go went: verification alone would have been enough here.
    meta2 = classifier(verification={"note": long * 2})
    parsed2 = ModelMetadata.from_custom_string(meta2.to_custom_string())
    assert parsed2.verification is None and parsed2.versions == meta2.versions
    assert parsed2.feature_names_in == meta2.feature_names_in


def test_custom_string_counts_utf8_bytes():
    # 100 labels of 3 CJK chars: fewer than 1023 characters, more than 1023 bytes as UTF-8.
    labels = [f"標籤{chr(0x4E00 + i)}" for i in range(100)]
    meta = classifier(classes=labels, feature_names_in=None)
    assert len(json.dumps(labels, ensure_ascii=False)) < CUSTOM_STRING_MAX_BYTES
    with pytest.raises(MetadataError, match="essential metadata takes .* bytes"):
        meta.to_custom_string()
    fits = classifier(classes=labels[:50], feature_names_in=None)
    assert len(fits.to_custom_string().encode("utf-8")) <= CUSTOM_STRING_MAX_BYTES


def test_custom_string_empty_or_garbage_names_source():
    with pytest.raises(MetadataError, match="m.rknn: the custom string is empty"):
        ModelMetadata.from_custom_string("", source="m.rknn")
    with pytest.raises(MetadataError, match="m.rknn: not valid JSON"):
        ModelMetadata.from_custom_string("model v3 by alice", source="m.rknn")
    essentials = json.loads(classifier().to_custom_string())
    del essentials["classes"]
    with pytest.raises(MetadataError, match="m.rknn: missing key.*classes"):
        ModelMetadata.from_custom_string(json.dumps(essentials), source="m.rknn")


# --- scirknn ---------------------------------------------------------------------
def test_scirknn_multiclass_sidecar():
    data = {
        "input_shape": [1, 64],
        "output_shape": [1, 10],
        "classes": list(range(10)),
        "mode": "classifier",
    }
    meta = ModelMetadata.from_json(json.dumps(data), source="digits.rknn.json")
    assert meta.task == "classifier" and meta.outputs == "probabilities"
    assert meta.classes == tuple(range(10)) and meta.n_features_in == 64
    assert meta.batch_sizes == (1,) and meta.estimator == "MLPClassifier"


def test_scirknn_binary_and_regressor_and_null_batch():
    binary = {
        "input_shape": [None, 2],
        "output_shape": [None, 1],
        "classes": ["no", "yes"],
        "mode": "classifier",
    }
    meta = ModelMetadata.from_json(json.dumps(binary))
    assert meta.classes == ("no", "yes") and meta.batch_sizes == (1,)
    reg = {"input_shape": [4, 1], "output_shape": [4, 1], "mode": "regressor"}
    meta = ModelMetadata.from_json(json.dumps(reg))
    assert meta.task == "regressor" and meta.classes is None and meta.batch_sizes == (4,)


@pytest.mark.parametrize(
    "data, message",
    [
        (
            {
                "input_shape": [1, 2],
                "output_shape": [1, 3],
                "classes": [0, 1],
                "mode": "classifier",
            },
            "output width 3 does not fit 2 classes",
        ),
        ({"input_shape": [1, 2], "output_shape": [1, 2], "mode": "classifier"}, "no 'classes'"),
        ({"input_shape": [1, 2], "output_shape": [1, 1], "mode": "clusterer"}, "mode is"),
        ({"input_shape": [2], "output_shape": [1, 1], "mode": "regressor"}, "input_shape"),
    ],
)
def test_bad_scirknn_sidecar(data, message):
    with pytest.raises(MetadataError, match=f"^s.json: .*{message}"):
        ModelMetadata.from_json(json.dumps(data), source="s.json")


# --- files -----------------------------------------------------------------------
def test_write_then_read_sidecar_checks_sha(tmp_path):
    model = tmp_path / "m.rknn"
    model.write_bytes(b"model bytes v1")
    path = write_sidecar(model, classifier(sha256=None))
    assert path == sidecar_path(model) == str(model) + ".json"
    meta = read_sidecar(model)
    assert meta.sha256 == hashlib.sha256(b"model bytes v1").hexdigest()
    assert meta == classifier(sha256=meta.sha256)

    model.write_bytes(b"model bytes v2")
    with pytest.raises(MetadataError, match="sidecar records sha256 .* has sha256") as info:
        read_sidecar(model)
    assert str(model) + ".json" in str(info.value)


def test_sidecar_without_sha_is_not_checked(tmp_path):
    model = tmp_path / "m.rknn"
    model.write_bytes(b"anything")
    (tmp_path / "m.rknn.json").write_text(classifier(sha256=None).to_json())
    assert read_sidecar(model).sha256 is None


def test_missing_sidecar_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_sidecar(tmp_path / "none.rknn")


def test_bad_sidecar_file_names_path(tmp_path):
    model = tmp_path / "m.rknn"
    model.write_bytes(b"x")
    (tmp_path / "m.rknn.json").write_text(json.dumps(sidecar_dict(schema_version=9)))
    with pytest.raises(MetadataError, match=f"^{tmp_path / 'm.rknn.json'}: schema_version"):
        read_sidecar(model)
