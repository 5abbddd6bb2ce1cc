"""The installed package works from anywhere: every module imports, both CLIs start, and a
model goes from scikit-learn through emit.to_onnx to rkrt.Session on the test double.

make test's numpy-2 lane runs this against the built wheel, installed into its own venv,
with RKRT_TEST_INSTALLED=1 (conftest.py then refuses a source-tree import); the main lane
runs it against the editable install.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("rkrt", "emit")


def source_modules(package: str) -> set[str]:
    """Dotted names of every module of `package` in the source tree."""
    root = REPO / package
    return {
        ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for path in root.rglob("*.py")
    }


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_of_the_source_tree_is_installed_and_imports(package: str) -> None:
    top = importlib.import_module(package)
    installed = {package} | {
        m.name for m in pkgutil.walk_packages(top.__path__, prefix=f"{package}.")
    }
    assert sorted(source_modules(package) - installed) == []
    for name in sorted(installed):
        if name.endswith(".__main__"):  # runs the CLI: test_cli_help_runs_... starts it
            assert importlib.util.find_spec(name) is not None
        else:
            importlib.import_module(name)


def test_installed_lane_imports_the_installed_package_not_the_source_tree() -> None:
    if os.environ.get("RKRT_TEST_INSTALLED") != "1":
        pytest.skip("the editable main lane; the numpy-2 lane sets RKRT_TEST_INSTALLED=1")
    for package in PACKAGES:
        location = Path(importlib.import_module(package).__file__).resolve()
        assert location.parent != REPO / package, f"{package} imported from the source tree"
        assert "site-packages" in location.parts, location


@pytest.mark.parametrize("package", PACKAGES)
def test_cli_help_runs_from_another_directory(package: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", package, "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m {package}")


def test_packages_import_with_tests_on_sys_path(tmp_path: Path) -> None:
    # bench/, examples/ and scripts/ put tests/ on sys.path to reach the test double (so does
    # pytest): a folder of tests/ named like a package would then shadow an editable install,
    # whose finder Python consults after the namespace package the folder makes.
    tests = REPO / "tests"
    code = (
        f"import sys; sys.path.insert(0, {str(tests)!r}); import emit, rkrt; "
        "print(rkrt.__file__, emit.__file__)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "None" not in done.stdout.split(), f"a namespace package from {tests}: {done.stdout}"


def test_to_onnx_then_session_on_the_test_double(fake_so, tmp_path: Path) -> None:
    from fake_rknnrt import Dense, FakeModel
    from onnx import numpy_helper
    from sklearn.datasets import load_iris
    from sklearn.neural_network import MLPClassifier

    import emit
    import rkrt

    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=0).fit(X, y)
    graph = emit.to_onnx(clf).graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    layers: list[list] = []
    for node in graph.node:  # Gemm, optionally followed by its activation
        if node.op_type == "Gemm":
            layers.append([weights[node.input[1]], weights[node.input[2]], "identity"])
        else:
            layers[-1][2] = node.op_type.lower()
    path = FakeModel([Dense(*layer) for layer in layers], dtype="float16").save(tmp_path / "m")
    with rkrt.Session(path) as session:
        got = np.concatenate([session.run(X[i : i + 1])[0] for i in range(len(X))])
    np.testing.assert_allclose(got, clf.predict_proba(X), atol=5e-3)
    assert np.mean(got.argmax(1) == clf.predict(X)) >= 0.99
