"""Driving rknn-toolkit2: ONNX in, .rknn out, and the built model run on its simulator.

The toolkit is noisy (C code printing to fd 1, Python loggers and progress bars to
stderr), reports failures either by returning -1 or by raising a ValueError wrapping a
traceback, and keeps its own logger bound to the stream that existed when it was first
imported. `Toolkit` hides all of that: every call is captured at the file-descriptor
level into `Toolkit.log`, and any failure becomes a `ToolkitError` carrying the log
lines that explain it.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
import re
import sys
import tempfile
import warnings
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from emit.errors import EmitError

TOOLKIT_DISTRIBUTION = "rknn-toolkit2"
_TOOLKIT_LOGGER = "rknnLogger"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# Error-level lines the toolkit prints on every successful build.
_HARMLESS = ("Unkown op target: 0", "rknn-toolkit2 version")


class ToolkitError(EmitError, RuntimeError):
    """rknn-toolkit2 refused a step; `log_lines` holds the lines that say why, `log` all of it."""

    def __init__(self, step: str, log_lines: Sequence[str], hint: str = "", log: str = "") -> None:
        self.step = step
        self.log = log
        self.log_lines = list(log_lines)
        detail = "\n  ".join(self.log_lines) if self.log_lines else "(the toolkit logged no error)"
        message = f"rknn-toolkit2 failed in {step}:\n  {detail}"
        super().__init__(message + (f"\n{hint}" if hint else ""))
        self.hint = hint

    @property
    def reason(self) -> str:
        """The most telling single line: the first logged error, else the hint."""
        return self.log_lines[0] if self.log_lines else (self.hint or "no error was logged")


def toolkit_version() -> str:
    """The installed rknn-toolkit2 version, or raise ToolkitError when it is missing."""
    try:
        return importlib_metadata.version(TOOLKIT_DISTRIBUTION)
    except importlib_metadata.PackageNotFoundError:
        raise ToolkitError("import", [], _INSTALL_HINT) from None


_INSTALL_HINT = (
    "rknn-toolkit2 is not installed: install it with "
    "`pip install --no-deps rknn-toolkit2==2.5.0` and the `host` extra of this package "
    "(`make test` does both)."
)


def supported_platforms() -> Tuple[str, ...]:
    """The target platforms this toolkit can build for (its own table, sorted)."""
    with _quiet_import():
        from rknn.api.rknn_platform import support_soc_npu_target
    return tuple(sorted(support_soc_npu_target))


def check_target_platform(target_platform: str) -> str:
    """Return `target_platform` if the toolkit supports it, else raise ValueError listing them."""
    platforms = supported_platforms()
    if target_platform not in platforms:
        raise ValueError(
            f"target_platform {target_platform!r} is not supported by rknn-toolkit2 "
            f"{toolkit_version()}; expected one of: {', '.join(platforms)}"
        )
    return target_platform


def write_calibration_dataset(data: np.ndarray, directory: Path, batch_size: int) -> Path:
    """Write `data` as the toolkit's dataset file: a text file naming one .npy per line.

    Each .npy is one calibration input of shape (batch_size, n_features), the model's
    largest compiled shape (the toolkit rejects any other). Rows are cycled so every row
    is used and the last file is full.
    """
    rows = np.ascontiguousarray(data, dtype=np.float32)
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise ValueError(
            f"calibration dataset must be a non-empty 2-D array (rows, features), "
            f"got shape {rows.shape}"
        )
    if not np.isfinite(rows).all():
        raise ValueError("calibration dataset contains NaN or infinite values; remove them")
    n_files = -(-rows.shape[0] // batch_size)
    order = np.arange(n_files * batch_size) % rows.shape[0]
    lines = []
    for i in range(n_files):
        path = directory / f"calibration_{i:05d}.npy"
        np.save(path, rows[order[i * batch_size : (i + 1) * batch_size]])
        lines.append(str(path.resolve()))
    listing = directory / "dataset.txt"
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return listing


class Toolkit:
    """One rknn-toolkit2 session: configure, build from ONNX, export, run on the simulator.

    Output of every toolkit call goes to `log`, never to the terminal. Use as a context
    manager (or call `close`) to release the toolkit's native resources.
    """

    def __init__(
        self,
        target_platform: str,
        *,
        optimization_level: int = 3,
        custom_string: Optional[str] = None,
    ) -> None:
        check_target_platform(target_platform)
        self.target_platform = target_platform
        self.optimization_level = optimization_level
        self.custom_string = custom_string
        self._log = io.StringIO()
        self._rknn: Any = None
        self._runtime_ready = False
        self._batch_sizes: Tuple[int, ...] = ()
        # The toolkit drops debug graphs (check*_*.onnx) into the working directory:
        # every toolkit call runs inside this scratch directory instead of the caller's.
        self._scratch = tempfile.TemporaryDirectory(prefix="emit-toolkit-")

    @property
    def log(self) -> str:
        """Everything the toolkit printed so far, ANSI colours removed."""
        return self._log.getvalue()

    def build(
        self,
        onnx_path: os.PathLike | str,
        *,
        batch_sizes: Sequence[int],
        n_features: int,
        quantize: Optional[str] = None,
        dataset: Optional[np.ndarray] = None,
    ) -> None:
        """Build the model for every size in `batch_sizes` (one model, dynamic input).

        The ONNX graph must have been made at the largest batch size. int8 needs
        `dataset` (calibration rows), written here in the toolkit's dataset-file format.
        """
        sizes = tuple(sorted(set(batch_sizes)))
        if quantize not in (None, "int8"):
            raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
        if quantize == "int8" and dataset is None:
            raise ValueError("int8 quantization needs calibration rows: pass dataset=X")
        self._batch_sizes = sizes
        options: dict[str, Any] = {
            "target_platform": self.target_platform,
            "optimization_level": self.optimization_level,
            "custom_string": self.custom_string,
        }
        if len(sizes) > 1:
            options["dynamic_input"] = [[[b, n_features]] for b in sizes]
        with self._captured():
            from rknn.api import RKNN

            self._rknn = RKNN(verbose=True)
        self._call("config", self._rknn.config, **options)
        self._call("load_onnx", self._rknn.load_onnx, model=_absolute(onnx_path))
        if quantize is None:
            self._call("build", self._rknn.build, do_quantization=False)
            return
        with tempfile.TemporaryDirectory(prefix="emit-calibration-") as tmp:
            listing = write_calibration_dataset(dataset, Path(tmp), max(sizes))
            self._call("build", self._rknn.build, do_quantization=True, dataset=str(listing))

    def export(self, path: os.PathLike | str) -> None:
        """Write the built model to `path`."""
        self._require_built("export")
        self._call("export_rknn", self._rknn.export_rknn, _absolute(path))

    def infer(self, x: np.ndarray) -> List[np.ndarray]:
        """Run the built model on the simulator; `x` must be float32 with a compiled batch size."""
        self._require_built("infer")
        if x.dtype != np.float32 or x.ndim != 2 or x.shape[0] not in self._batch_sizes:
            raise ValueError(
                f"simulator input must be float32 of shape (batch, features) with batch in "
                f"{self._batch_sizes}, got {x.dtype} {x.shape}"
            )
        if not self._runtime_ready:
            self._call("init_runtime", self._rknn.init_runtime)
            self._runtime_ready = True
        outputs = self._call("inference", self._rknn.inference, inputs=[x])
        return [np.asarray(o, dtype=np.float32) for o in outputs]

    def close(self) -> None:
        """Release the toolkit's resources; safe to call twice."""
        if self._rknn is not None:
            with self._captured():
                self._rknn.release()
            self._rknn = None
        self._scratch.cleanup()

    def __enter__(self) -> Toolkit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ---------------------------------------------------------------
    def _require_built(self, what: str) -> None:
        if self._rknn is None:
            raise RuntimeError(f"Toolkit.{what}() needs a model: call build() first")

    def _call(self, step: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        start = len(self.log)
        try:
            with self._captured():
                result = fn(*args, **kwargs)
        except Exception as exc:  # the toolkit raises bare ValueErrors and worse
            lines = relevant_lines(self.log[start:]) or [f"{type(exc).__name__}: {exc}"]
            raise ToolkitError(step, lines, log=self.log) from exc
        # Some steps report failure by returning -1 (or None from inference) instead.
        if (isinstance(result, int) and result != 0) or result is None:
            raise ToolkitError(step, relevant_lines(self.log[start:]), log=self.log)
        return result

    @contextlib.contextmanager
    def _captured(self) -> Iterator[None]:
        with tempfile.TemporaryFile() as sink, _working_directory(self._scratch.name):
            try:
                with capture_output(sink.fileno()), warnings.catch_warnings():
                    # The toolkit's own DeprecationWarnings etc. belong in its log, not in
                    # the caller's warnings (catch_warnings restores the hook afterwards).
                    warnings.simplefilter("default")
                    warnings.showwarning = _warning_to_stderr
                    yield
            finally:
                sink.seek(0)
                self._log.write(_ANSI.sub("", sink.read().decode("utf-8", errors="replace")))


def _absolute(path: os.PathLike | str) -> str:
    return os.fspath(Path(path).resolve())


@contextlib.contextmanager
def _working_directory(path: str) -> Iterator[None]:
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _warning_to_stderr(
    message: Warning | str, category: type, filename: str, lineno: int, *args: Any
) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno))


def relevant_lines(log: str, limit: int = 12) -> List[str]:
    """The error lines of a toolkit log (the ones that explain a failure), deduplicated."""
    found: List[str] = []
    for line in _ANSI.sub("", log).splitlines():
        text = line.strip()
        is_error = text.startswith(("E ", "ValueError", "RuntimeError", "TypeError"))
        if text.endswith("Traceback (most recent call last):"):
            continue
        if is_error and not any(h in text for h in _HARMLESS) and text not in found:
            found.append(text)
    return found[-limit:]


# --- output capture ----------------------------------------------------------------
_fd_streams: dict[int, io.TextIOWrapper] = {}


def _fd_stream(fd: int) -> io.TextIOWrapper:
    # Never closed: the toolkit's logger may keep a reference to it after capture ends,
    # and then writes to the (restored) real descriptor, which is what it would do anyway.
    if fd not in _fd_streams:
        _fd_streams[fd] = open(fd, "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    return _fd_streams[fd]


def _flush_all() -> None:
    for stream in (sys.stdout, sys.stderr, *_fd_streams.values()):
        with contextlib.suppress(Exception):
            stream.flush()
    # C stdio buffers output to a file fully; flush it before the descriptor changes.
    ctypes.CDLL(None).fflush(None)


@contextlib.contextmanager
def capture_output(sink_fd: int) -> Iterator[None]:
    """Send everything written to fds 1 and 2, from C or Python, to `sink_fd`.

    Also points sys.stdout/sys.stderr and the toolkit's logger at those descriptors, as
    they may be replaced objects (pytest, IDEs) that bypass the descriptors.
    """
    _flush_all()
    saved_fds = os.dup(1), os.dup(2)
    saved_streams = sys.stdout, sys.stderr
    handlers = [
        h
        for h in logging.getLogger(_TOOLKIT_LOGGER).handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]
    old_handler_streams = [h.stream for h in handlers]
    try:
        os.dup2(sink_fd, 1)
        os.dup2(sink_fd, 2)
        sys.stdout, sys.stderr = _fd_stream(1), _fd_stream(2)
        for h in handlers:
            h.setStream(sys.stderr)
        yield
    finally:
        _flush_all()
        for h, stream in zip(handlers, old_handler_streams):
            h.setStream(stream)
        sys.stdout, sys.stderr = saved_streams
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        os.close(saved_fds[0])
        os.close(saved_fds[1])


@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    # Importing rknn.api takes ~2 s (it imports torch) and prints warnings.
    with tempfile.TemporaryFile() as sink, capture_output(sink.fileno()):
        try:
            import rknn.api  # noqa: F401
        except ImportError:
            raise ToolkitError("import", [], _INSTALL_HINT) from None
        yield
