"""Every file and test the Makefile names for a lane exists.

pytest ignores a `--deselect` or `--ignore` that matches nothing, so a renamed test silently
slipped back into the numpy-2 lane, where atheris is not installed, and failed CI there.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _makefile() -> str:
    return (REPO / "Makefile").read_text().replace("\\\n", " ")


def test_every_deselected_test_exists() -> None:
    nodes = re.findall(r"--deselect\s+(\S+)", _makefile())
    assert nodes
    for node in nodes:
        path, _, name = node.partition("::")
        assert (REPO / path).is_file(), f"Makefile deselects {node}: no file {path}"
        source = (REPO / path).read_text()
        assert re.search(rf"^def {re.escape(name)}\(", source, re.M), (
            f"Makefile deselects {node}, but {path} defines no test {name}"
        )


def test_every_ignored_or_listed_test_path_exists() -> None:
    text = _makefile()
    paths = re.findall(r"--ignore=(\S+)", text)
    listed = re.search(r"^SKL_TESTS := (.*)$", text, re.M)
    assert paths and listed
    for path in paths + listed.group(1).split():
        assert (REPO / path).exists(), f"the Makefile names {path}, which does not exist"
