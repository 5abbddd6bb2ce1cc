"""How rkrt's modules depend on each other, and the seam between emit and rkrt."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import rkrt

RKRT = Path(rkrt.__file__).parent


def _imports(path: Path, package: str) -> set[str]:
    """Every rkrt module ``path`` imports, wherever the import statement is (function
    bodies and TYPE_CHECKING blocks included: a lazy import still couples both ways)."""
    module = package if path.name == "__init__.py" else f"{package}.{path.stem}"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.rsplit(".", node.level - (path.name == "__init__.py"))[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            if base == package and not node.module:  # from . import x
                found.update(f"{package}.{alias.name}" for alias in node.names)
            elif base.startswith(package + "."):
                found.add(base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(package + "."))
    found.discard(module)
    return found


def _graph() -> dict[str, set[str]]:
    return {
        ("rkrt" if p.name == "__init__.py" else f"rkrt.{p.stem}"): _imports(p, "rkrt")
        for p in RKRT.glob("*.py")
    }


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as [a, b, ..., a], or [] when there is none."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_the_import_walker_sees_every_kind_of_import() -> None:
    graph = _graph()
    assert "rkrt.context" in graph["rkrt.binding"]  # from .context import Context
    assert "rkrt.external" in graph["rkrt.binding"]  # from . import external
    assert "rkrt._ffi" in graph["rkrt.errors"]  # inside a function
    assert "rkrt.session" in graph["rkrt"]  # inside `if TYPE_CHECKING:`
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycle_inside_rkrt() -> None:
    graph = _graph()
    graph.pop("rkrt")  # the package imports everything lazily and nothing imports it back
    assert _cycle(graph) == []


def _private_attributes(source: str, owner: str) -> set[str]:
    """``self._x`` names the class ``owner`` assigns, reads or defines."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == owner:
            for sub in ast.walk(node):
                if isinstance(sub, ast.FunctionDef) and sub.name.startswith("_"):
                    names.add(sub.name)
                if (
                    isinstance(sub, ast.Attribute)
                    and isinstance(sub.value, ast.Name)
                    and sub.value.id == "self"
                    and sub.attr.startswith("_")
                ):
                    names.add(sub.attr)
    return {n for n in names if not (n.startswith("__") and n.endswith("__"))}


def _foreign_private_reads(source: str) -> set[str]:
    """``x._name`` read on anything but ``self`` (dunders aside)."""
    return {
        node.attr
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
    }


def test_iobinding_uses_no_session_private_attribute() -> None:
    session_privates = _private_attributes((RKRT / "session.py").read_text(), "Session")
    assert {"_context", "_binding", "_general", "_attach"} <= session_privates
    binding = (RKRT / "binding.py").read_text()
    assert "rkrt.session" not in _imports(RKRT / "binding.py", "rkrt")
    assert not _foreign_private_reads(binding) & session_privates
    # What the check would have caught: IOBinding reaching into session._lock.
    assert "_lock" in _foreign_private_reads("lock = session._lock")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return set(out.split())


@pytest.mark.parametrize("code", ["import emit", "import rkrt", "import rkrt.metadata"])
def test_import_does_not_parse_the_c_header(code: str) -> None:
    loaded = _modules_after(code)
    assert "rkrt._ffi" not in loaded and "rkrt._matmul_ffi" not in loaded and "cffi" not in loaded


def test_emit_takes_only_rkrt_metadata_from_rkrt() -> None:
    emit_dir = RKRT.parent / "emit"
    taken = set()
    for path in emit_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rkrt"):
                taken.add(node.module)
            elif isinstance(node, ast.Import):
                taken.update(a.name for a in node.names if a.name.startswith("rkrt"))
    assert taken == {"rkrt.metadata"}


def test_a_public_name_loads_its_module_on_first_use() -> None:
    loaded = _modules_after("import rkrt; rkrt.Session")
    assert {"rkrt.session", "rkrt._ffi"} <= loaded
    assert sorted(rkrt.__all__) == sorted(rkrt._LAZY)
    for name in rkrt.__all__:
        assert getattr(rkrt, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'Sesion'"):
        rkrt.Sesion  # noqa: B018
