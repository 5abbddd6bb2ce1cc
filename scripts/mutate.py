"""Plant known bugs one at a time in a scratch copy of the repo and report which the tests kill.

    .venv/bin/python scripts/mutate.py               # every mutant, its own test subset
    .venv/bin/python scripts/mutate.py pool-round-robin softmax-no-max   # some of them

Each mutant is a realistic bug a board would punish (a hidden copy, a stale cache, a padded
layout ignored, a caller waiting behind a busy context, NaN from unwritten padding ...):
exact text replaced in one source file, and the tests that should notice. A mutant is
"killed" when those tests fail, "SURVIVED" when they pass (a hole in the suite), "ERROR" when
the run could not judge (collection error, a snippet no longer in the source: update it).
make test runs it (tests/test_project/test_mutants.py, about 2.5 min). Exit status 1 if any
mutant survived or errored.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIDELITY = "tests/test_rkrt/test_board_fidelity.py"


@dataclass(frozen=True)
class Mutant:
    name: str
    bug: str
    path: str
    edits: tuple[tuple[str, str], ...]  # (exact old text, new text), each old text unique
    tests: tuple[str, ...]


MUTANTS = (
    Mutant(
        "fp16-input-upcast-slow-path",
        "Session.run converts float16 inputs to float32 before C (list/dict path)",
        "rkrt/general.py",
        (
            (
                "checked = [np.require(a, dt, [",
                "checked = [np.require(a, _F32 if dt == np.float16 else dt, [",
            ),
        ),  # noqa: E501
        (FIDELITY, "tests/test_rkrt/test_session_inputs.py"),
    ),
    Mutant(
        "fp16-input-upcast-fast-path",
        "Session.run converts float16 inputs to float32 before C (positional path)",
        "rkrt/general.py",
        (
            (
                "                    for slot, a in zip(slots, arrays):\n",
                "                    arrays = [a.astype(_F32) if a.dtype == np.float16 else a "
                "for a in arrays]\n                    for slot, a in zip(slots, arrays):\n",
            ),
        ),
        (FIDELITY, "tests/test_rkrt/test_session_inputs.py"),
    ),
    Mutant(
        "out-reshaped-in-place",
        "an out= array reshaped in place after the first call is accepted",
        "rkrt/general.py",
        (("                            or y.shape != o.shape\n", ""),),
        (FIDELITY, "tests/test_rkrt/test_session.py"),
    ),
    Mutant(
        "output-sync-to-device",
        "IOBinding syncs outputs TO_DEVICE instead of FROM_DEVICE",
        "rkrt/binding.py",
        (("ret = sync(handle, mem, _FROM_DEVICE)", "ret = sync(handle, mem, _TO_DEVICE)"),),
        (FIDELITY, "tests/test_rkrt/test_binding.py", "tests/test_rkrt/test_external.py"),
    ),
    Mutant(
        "input-sync-skipped",
        "IOBinding never flushes the inputs before a run",
        "rkrt/binding.py",
        (("ret = sync(handle, mem, _TO_DEVICE)\n", "ret = 0\n"),),
        (FIDELITY, "tests/test_rkrt/test_binding.py"),
    ),
    Mutant(
        "output-sync-before-run",
        "IOBinding invalidates the outputs before the run instead of after it",
        "rkrt/binding.py",
        (
            (
                "            ret = self._run(handle, _NULL)\n            if ret < 0:\n"
                '                check(ret, "rknn_run")\n            for mem in self._out_mems:\n'
                "                ret = sync(handle, mem, _FROM_DEVICE)\n"
                '                if ret < 0:\n                    check(ret, "rknn_mem_sync")\n',
                "            for mem in self._out_mems:\n"
                "                ret = sync(handle, mem, _FROM_DEVICE)\n"
                '                if ret < 0:\n                    check(ret, "rknn_mem_sync")\n'
                "            ret = self._run(handle, _NULL)\n            if ret < 0:\n"
                '                check(ret, "rknn_run")\n',
            ),
        ),
        (FIDELITY, "tests/test_rkrt/test_binding.py"),
    ),
    Mutant(
        "layout-ignores-w-stride",
        "zero-copy views ignore a padded w_stride",
        "rkrt/io_layout.py",
        (
            (
                "if attr.n_dims == 4 and attr.fmt == _NHWC and attr.w_stride > attr.dims[2]:",
                "if False:",
            ),
        ),
        (FIDELITY, "tests/test_rkrt/test_binding.py"),
    ),
    Mutant(
        "layout-ignores-format",
        "the native-layout check ignores the tensor format",
        "rkrt/io_layout.py",
        (
            (
                "return (native.fmt == plain.fmt and native.n_dims == plain.n_dims",
                "return (native.n_dims == plain.n_dims",
            ),
        ),
        (FIDELITY, "tests/test_rkrt/test_binding.py"),
    ),
    Mutant(
        "pool-round-robin",
        "Pool dispatches round-robin instead of to an idle context",
        "rkrt/pool.py",
        (
            ("import queue\n", "import itertools\nimport queue\n"),
            (
                "        self._idle: queue.SimpleQueue[Session]",
                "        self._turn = itertools.count()\n"
                "        self._idle: queue.SimpleQueue[Session]",
            ),
            (
                "        session = self._idle.get()\n        try:\n"
                "            return session.run(*arrays, out=out)\n        finally:\n"
                "            self._idle.put(session)\n",
                "        session = self.sessions[next(self._turn) % len(self.sessions)]\n"
                "        return session.run(*arrays, out=out)\n",
            ),
            (  # the pool's threads (submit, apply): each request pinned to the next context
                "        return self._dispatch.submit("
                "_on_idle, self._idle, fn, *args, block=block)\n",
                "        session = self.sessions[next(self._turn) % len(self.sessions)]\n"
                "        return self._dispatch.submit(fn, session, *args, block=block)\n",
            ),
        ),
        (FIDELITY, "tests/test_rkrt/test_pool.py"),
    ),
    Mutant(
        "map-first-failure-in-time",
        "Pool.map over a list raises the failure that happened first, not the first in order",
        "rkrt/dispatch.py",
        (("if self.failed is None or index < self.failed[0]:", "if self.failed is None:"),),
        ("tests/test_rkrt/test_pool_stream.py",),
    ),
    Mutant(
        "map-holds-the-workers",
        "Pool.map over a list keeps the pool's threads until it ends: other callers wait",
        "rkrt/dispatch.py",
        (("            if not queue_empty():\n", "            if False:\n"),),
        ("tests/test_rkrt/test_pool_stream.py",),
    ),
    Mutant(
        "matmul-a-padding-unwritten",
        "MatMul does not write A's padding columns (runtime memory is not zeroed)",
        "rkrt/matmul.py",
        (("        a_all[...] = setting.a_zp if setting is not None else 0\n", ""),),
        (FIDELITY, "tests/test_rkrt/test_matmul.py"),
    ),
    Mutant(
        "softmax-no-max",
        "the matmul-path softmax does not subtract the row maximum",
        "rkrt/weights_mlp.py",
        (("e = np.exp(z - z.max(axis=1, keepdims=True))", "e = np.exp(z)"),),
        (FIDELITY, "tests/test_rkrt/test_matmul_mlp.py"),
    ),
    Mutant(
        "onnx-initializers-set-order",
        "ONNX initializers written in the order of a set of their names",
        "emit/graph.py",
        (
            ("    tensor = INPUT_NAME\n", "    tensor = INPUT_NAME\n    pending = {}\n"),
            (
                '        _add_initializer(graph, f"{prefix}.weight", layer.weight)\n'
                '        _add_initializer(graph, f"{prefix}.bias", layer.bias)\n',
                '        pending[f"{prefix}.weight"] = layer.weight\n'
                '        pending[f"{prefix}.bias"] = layer.bias\n',
            ),
            (
                "    return model\n",
                "    for key in set(pending):\n        _add_initializer(graph, key, pending[key])\n"
                "    return model\n",
            ),
        ),
        ("tests/test_emit/test_emit_onnx_determinism.py", "tests/test_emit/test_emit_onnx.py"),
    ),
)


def _scratch_copy(root: Path) -> Path:
    """The work tree's files (tracked and new, not ignored) under root/repo; .cache shared so
    the test double and the emulated lane are not rebuilt."""
    git = ["git", "ls-files", "-co", "--exclude-standard", "-z"]
    listed = subprocess.run(git, cwd=REPO, capture_output=True, check=True).stdout.decode()
    dest = root / "repo"
    for rel in filter(None, listed.split("\0")):
        src = REPO / rel
        if src.is_symlink():  # rkrt/native_headers: a link git tracks as a link
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).symlink_to(os.readlink(src))
        elif src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    (REPO / ".cache").mkdir(exist_ok=True)
    (dest / ".cache").symlink_to(REPO / ".cache")
    return dest


def _plant(scratch: Path, mutant: Mutant) -> tuple[str, list[int]]:
    """Apply the edits; the original text (to restore later) and the lines changed."""
    path = scratch / mutant.path
    original = text = path.read_text()
    lines = [original[: original.find(old)].count("\n") + 1 for old, _ in mutant.edits]
    for old, new in mutant.edits:
        count = text.count(old)
        if count != 1:
            raise LookupError(f"{mutant.path}: snippet found {count} times: {old[:60]!r}")
        text = text.replace(old, new)
    path.write_text(text)
    return original, lines


def _run_tests(scratch: Path, tests: tuple[str, ...]) -> tuple[int, list[str], float]:
    env = {**os.environ, "PYTHONPATH": str(scratch), "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", *tests],
        cwd=scratch, env=env, capture_output=True, text=True,
    )  # fmt: skip
    failed = re.findall(r"^FAILED (\S+)", proc.stdout, re.M)
    return proc.returncode, failed, time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    args = parser.parse_args(argv)
    known = {m.name: m for m in MUTANTS}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown mutants {unknown}; known: {list(known)}")
    chosen = [known[n] for n in args.names] if args.names else list(MUTANTS)
    bad = 0
    with tempfile.TemporaryDirectory(prefix="rkrt-mutate-") as tmp:
        scratch = _scratch_copy(Path(tmp))
        probe = subprocess.run([sys.executable, "-c", "import rkrt; print(rkrt.__file__)"],
                               cwd=scratch, env={**os.environ, "PYTHONPATH": str(scratch)},
                               capture_output=True, text=True)  # fmt: skip
        if not probe.stdout.startswith(str(scratch)):
            sys.exit(f"the tests would import rkrt from {probe.stdout.strip()!r}, not the copy")
        code, failed, _ = _run_tests(scratch, (FIDELITY,))
        if code != 0:
            sys.exit(f"the unmutated suite fails ({failed}); fix that first")
        for mutant in chosen:
            try:
                original, lines = _plant(scratch, mutant)
            except LookupError as exc:
                print(f"ERROR     {mutant.name}: {exc}")
                bad += 1
                continue
            try:
                code, failed, seconds = _run_tests(scratch, mutant.tests)
            finally:
                (scratch / mutant.path).write_text(original)
            verdict = "killed" if code == 1 and failed else "SURVIVED" if code == 0 else "ERROR"
            bad += verdict != "killed"
            where = f"{mutant.path}:{','.join(map(str, lines))}"
            print(f"{verdict:9} {mutant.name} ({where}; {mutant.bug}) [{seconds:.0f} s]")
            for node in failed:
                print(f"          fails: {node}")
            sys.stdout.flush()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
