"""What a user installs: the wheel holds every module and nothing else; the sdist the project.

Editable installs (make test's main lane) import from the source tree and hide a module the
packaging forgot. These tests build the wheel and the sdist the way a user or a packager does
(setuptools through `python -m build`, no isolation: the venv's setuptools) and compare them
with the tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("rkrt", "emit")
# Never in a wheel: the suite, the benchmarks, virtual environments, caches and build output.
NOT_SHIPPED = ("tests/", "bench/", "examples/", "scripts/", ".venv", ".cache/", "build/")


def build(tree: Path, out: Path, *kinds: str) -> dict[str, Path]:
    """Build the given kinds ("--wheel", "--sdist") of `tree` into `out`; paths by suffix."""
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", *kinds, "--outdir", str(out), str(tree)],
        check=True,
        capture_output=True,
    )
    return {p.suffix: p for p in out.iterdir() if p.suffix in (".whl", ".gz")}


def package_files(tree: Path) -> set[str]:
    """What the wheel must hold: every module, header and py.typed of the packages in `tree`."""
    files = set()
    for package in PACKAGES:
        # followlinks: rkrt/native_headers is a link to the top-level native_headers/
        for folder, _, names in os.walk(tree / package, followlinks=True):
            for name in names:
                if name.endswith((".py", ".h")) or name == "py.typed":
                    files.add((Path(folder) / name).relative_to(tree).as_posix())
    return files


def wheel_files(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as z:
        return {n: z.read(n) for n in z.namelist() if ".dist-info/" not in n}


def tracked_files() -> set[str]:
    """The repository's files as git has them, a linked folder expanded to its files."""
    listed = subprocess.run(
        ["git", "ls-files"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.split()
    files = set()
    for name in listed:
        path = REPO / name
        if path.is_symlink() and path.is_dir():
            files.update(f"{name}/{p.name}" for p in path.iterdir() if p.is_file())
        else:
            files.add(name)
    return files


def clean_copy(dest: Path) -> Path:
    """The tree as a fresh clone has it: setuptools reuses build/ and *.egg-info/ left in a
    working tree, which would let a wheel hold modules its configuration no longer ships."""
    ignore = shutil.ignore_patterns(
        ".git", ".venv*", ".cache", "__pycache__", "build", "dist", "*.egg-info", ".*_cache"
    )
    shutil.copytree(REPO, dest, symlinks=True, ignore=ignore)
    return dest


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    tree = clean_copy(tmp_path_factory.mktemp("tree") / "rkrt")
    return build(tree, tmp_path_factory.mktemp("dist"), "--wheel", "--sdist")


def test_wheel_holds_every_module_and_header_and_nothing_else(built) -> None:
    shipped = set(wheel_files(built[".whl"]))
    expected = package_files(REPO)
    assert {"emit/converters/registry.py", "rkrt/native_headers/rknn_api.h"} <= expected
    assert sorted(expected - shipped) == [], "missing from the wheel"
    assert sorted(shipped - expected) == [], "in the wheel but not a package file"
    assert not [n for n in shipped if n.startswith(NOT_SHIPPED)]


def test_wheel_is_named_with_the_version_both_packages_report(built) -> None:
    import emit
    import rkrt

    assert rkrt.__version__ == emit.__version__
    assert built[".whl"].name == f"rkrt-{rkrt.__version__}-py3-none-any.whl"
    assert built[".gz"].name == f"rkrt-{rkrt.__version__}.tar.gz"


def test_sdist_holds_every_file_of_the_repository(built) -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: no list of the repository's files to compare with")
    with tarfile.open(built[".gz"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert sorted(tracked_files() - names) == [], "tracked files missing from the sdist"


def test_wheel_built_from_the_sdist_is_the_same_wheel(built, tmp_path: Path) -> None:
    with tarfile.open(built[".gz"]) as tar:
        tar.extractall(tmp_path / "src")
    (unpacked,) = (tmp_path / "src").iterdir()
    again = build(unpacked, tmp_path / "dist", "--wheel")
    assert wheel_files(again[".whl"]) == wheel_files(built[".whl"])


def test_the_wheel_check_catches_a_subpackage_left_out(tmp_path: Path) -> None:
    # The packaging this project once had: packages listed by hand, emit.converters forgotten.
    tree = clean_copy(tmp_path / "tree")
    pyproject = tree / "pyproject.toml"
    text = pyproject.read_text()
    start = text.index("[tool.setuptools.packages.find]")
    end = text.index("\n\n", start)
    pyproject.write_text(
        text[:start] + '[tool.setuptools]\npackages = ["rkrt", "emit"]' + text[end:]
    )
    shipped = set(wheel_files(build(tree, tmp_path / "dist", "--wheel")[".whl"]))
    missing = package_files(tree) - shipped
    assert {p for p in missing if p.startswith("emit/converters/")} == {
        p for p in package_files(tree) if p.startswith("emit/converters/")
    }
