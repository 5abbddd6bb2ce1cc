"""`python -m emit` and untrusted model files: a pickle is unpickled only when the user names a
.pkl/.pickle path (and --help says what that means); a .skops file containing any type that is
not scikit-learn's is refused, naming the type, before anything is constructed."""

from __future__ import annotations

import argparse
import json
import pickle
import zipfile
from pathlib import Path

import pytest
import skops.io

from emit import cli

MARKER_NAME = "unpickled.marker"


class _Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _evil_pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps(_Payload(marker)))
    return path


@pytest.mark.parametrize("name", ["model.joblib", "model.bin", "model", "model.skops.gz"])
def test_pickles_under_other_names_are_never_unpickled(tmp_path: Path, capsys, name: str) -> None:
    marker = tmp_path / MARKER_NAME
    model = _evil_pickle(tmp_path / name, marker)
    assert cli.main([str(model), str(tmp_path / "out.rknn")]) == 1
    err = capsys.readouterr().err
    assert str(model) in err and "runs arbitrary code" in err and ".skops" in err
    assert not marker.exists()


def test_a_pickle_named_skops_is_not_unpickled(tmp_path: Path, capsys) -> None:
    marker = tmp_path / MARKER_NAME
    model = _evil_pickle(tmp_path / "model.skops", marker)
    assert cli.main([str(model), str(tmp_path / "out.rknn")]) == 1
    assert "not a readable .skops file" in capsys.readouterr().err
    assert not marker.exists()


def test_an_explicit_pkl_path_is_unpickled_and_help_warns(tmp_path: Path, capsys) -> None:
    helptext = cli.build_parser().format_help()
    assert "unpickling runs arbitrary" in " ".join(helptext.split())
    assert "only convert pickles you made or trust" in " ".join(helptext.split())
    marker = tmp_path / MARKER_NAME
    for suffix in (".pkl", ".pickle", ".PKL"):
        marker.unlink(missing_ok=True)
        model = _evil_pickle(tmp_path / f"model{suffix}", marker)
        assert cli.main([str(model), str(tmp_path / "out.rknn")]) == 1  # not an estimator
        assert marker.exists()  # the user's explicit choice: it was unpickled
        assert f"unpickling {model}: this runs any code" in capsys.readouterr().err


def _skops_with_type(tmp_path: Path, module: str, name: str) -> Path:
    """A .skops file whose object claims to be ``module.name`` (crafted in its schema)."""
    base = tmp_path / "base.skops"
    skops.io.dump({"m": argparse.Namespace(a="1")}, base)
    schema = json.loads(zipfile.ZipFile(base).read("schema.json"))
    node = schema["content"]["m"]
    node["__module__"], node["__class__"] = module, name
    crafted = tmp_path / f"{module}.{name}.skops"
    with zipfile.ZipFile(crafted, "w") as z:
        z.writestr("schema.json", json.dumps(schema))
    return crafted


@pytest.mark.parametrize(
    "module, name",
    [("argparse", "Namespace"), ("os", "system"), ("builtins", "eval"),
     ("subprocess", "Popen"), ("sklearnx", "Gadget")],
)  # fmt: skip
def test_skops_with_untrusted_types_is_refused(tmp_path: Path, capsys, module: str,
                                               name: str) -> None:  # fmt: skip
    model = _skops_with_type(tmp_path, module, name)
    if module == "argparse":
        model = tmp_path / "plain.skops"
        skops.io.dump({"m": argparse.Namespace(a="1")}, model)
    assert cli.main([str(model), str(tmp_path / "out.rknn")]) == 1
    err = capsys.readouterr().err
    assert f"{module}.{name}" in err and "not trusted" in err and str(model) in err
    assert "skops.io.load(path, trusted=[...])" in err
    assert not (tmp_path / "out.rknn").exists()


def test_load_model_refuses_before_constructing(tmp_path: Path, monkeypatch) -> None:
    """The trusted-types check reads the schema only: skops.io.load is never reached."""
    model = _skops_with_type(tmp_path, "os", "system")
    monkeypatch.setattr(skops.io, "load", lambda *a, **k: pytest.fail("skops.io.load called"))
    with pytest.raises(cli.CliError, match="os.system"):
        cli.load_model(model)
