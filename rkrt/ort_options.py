"""onnxruntime's SessionOptions and RunOptions for rkrt.ort, so programs that tune a session
run unchanged, and the errors rkrt.ort raises where onnxruntime raises its own.

Their CPU knobs (threads, graph optimisation, memory arenas, execution order, logging) are
accepted and have no effect: the graph was optimised when the .rknn was built and runs on the
NPU. What would have to produce something rkrt does not (a profile, an optimised model file)
raises when the session opens; ``RunOptions.terminate`` is honoured as onnxruntime honours it
before a run.

Attributes are typed: integers (numpy's too), True or False, strings, onnxruntime's enums; a
wrong type raises TypeError, an unknown name AttributeError (a typo never passes silently).
"""

from __future__ import annotations

import difflib
import enum
import operator
from typing import Any

import numpy as np

from .errors import DTypeError, Error, ShapeError


class GraphOptimizationLevel(enum.IntEnum):
    """onnxruntime's graph optimisation levels (no effect: the .rknn is already compiled)."""

    ORT_DISABLE_ALL = 0
    ORT_ENABLE_BASIC = 1
    ORT_ENABLE_EXTENDED = 2
    ORT_ENABLE_LAYOUT = 3
    ORT_ENABLE_ALL = 99


class ExecutionMode(enum.IntEnum):
    """onnxruntime's execution modes (no effect: the NPU runs the graph)."""

    ORT_SEQUENTIAL = 0
    ORT_PARALLEL = 1


class ExecutionOrder(enum.IntEnum):
    """onnxruntime's node execution orders (no effect: the NPU runs the graph)."""

    DEFAULT = 0
    PRIORITY_BASED = 1
    MEMORY_EFFICIENT = 2


class Fail(Error):
    """A run that did not happen (onnxruntime's FAIL), e.g. ``RunOptions.terminate`` set."""


class InvalidArgument(Error):
    """A call got something the model cannot take (onnxruntime's INVALID_ARGUMENT)."""


# What both an rkrt user and an onnxruntime user catch for a wrong dtype or shape.
class _InvalidDType(InvalidArgument, DTypeError):
    pass


class _InvalidShape(InvalidArgument, ShapeError):
    pass


class _Options:
    """Typed attributes with onnxruntime's defaults, plus string config entries."""

    _FIELDS: dict[str, tuple[type, Any]] = {}

    def __init__(self) -> None:
        for name, (_, default) in self._FIELDS.items():
            object.__setattr__(self, name, default)
        object.__setattr__(self, "_entries", {})

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._FIELDS:
            close = difflib.get_close_matches(name, self._FIELDS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise AttributeError(
                f"{type(self).__name__} has no attribute {name!r}; {hint}its attributes are "
                f"{sorted(self._FIELDS)}"
            )
        kind = self._FIELDS[name][0]
        if issubclass(kind, enum.Enum):
            if not isinstance(value, kind):
                raise TypeError(f"{name} takes a {kind.__name__} member, not {value!r}")
        elif kind is int:
            try:
                value = operator.index(value)  # numpy integers too, as onnxruntime takes them
            except TypeError:
                raise TypeError(f"{name} takes an int, not {type(value).__name__}") from None
        elif kind is bool:
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{name} takes True or False, not {value!r}")
            value = bool(value)
        elif type(value) is not kind:
            raise TypeError(f"{name} takes a {kind.__name__}, not {type(value).__name__}")
        object.__setattr__(self, name, value)

    def _add_entry(self, key: str, value: str) -> None:
        if type(key) is not str or type(value) is not str:
            raise TypeError(f"config entries are two strings, not ({key!r}, {value!r})")
        self._entries[key] = value

    def _get_entry(self, key: str) -> str:
        try:
            return self._entries[key]
        except KeyError:
            raise RuntimeError(
                f"{type(self).__name__} does not have configuration with key: {key}"
            ) from None


class SessionOptions(_Options):
    """onnxruntime's SessionOptions. Only ``enable_profiling`` and
    ``optimized_model_filepath`` matter: set, they make InferenceSession raise."""

    _FIELDS = {
        "graph_optimization_level": (GraphOptimizationLevel, GraphOptimizationLevel.ORT_ENABLE_ALL),
        "execution_mode": (ExecutionMode, ExecutionMode.ORT_SEQUENTIAL),
        "execution_order": (ExecutionOrder, ExecutionOrder.DEFAULT),
        "intra_op_num_threads": (int, 0),
        "inter_op_num_threads": (int, 0),
        "use_per_session_threads": (bool, True),
        "enable_cpu_mem_arena": (bool, True),
        "enable_mem_pattern": (bool, True),
        "enable_mem_reuse": (bool, True),
        "use_deterministic_compute": (bool, False),
        "log_severity_level": (int, -1),
        "log_verbosity_level": (int, 0),
        "logid": (str, ""),
        "enable_profiling": (bool, False),
        "profile_file_prefix": (str, "onnxruntime_profile_"),
        "optimized_model_filepath": (str, ""),
    }

    def add_session_config_entry(self, key: str, value: str) -> None:
        """Keep a config entry (onnxruntime's keys tune its CPU threads: no effect here)."""
        self._add_entry(key, value)

    def get_session_config_entry(self, key: str) -> str:
        """An entry added before; RuntimeError (as onnxruntime) for one that was not."""
        return self._get_entry(key)

    def refuse_unsupported(self) -> None:
        """ValueError for a setting rkrt cannot honour, before the session opens."""
        if self.enable_profiling:
            raise ValueError(
                "enable_profiling: rkrt.ort writes no onnxruntime profile; leave it False, and for "
                "the runtime's own per-layer times open rkrt.Session(path, collect_perf=True) "
                "and read its perf_detail"
            )
        if self.optimized_model_filepath:
            raise ValueError(
                f"optimized_model_filepath={self.optimized_model_filepath!r}: the .rknn is "
                "already compiled, there is no optimised graph to write; leave it empty"
            )


class RunOptions(_Options):
    """onnxruntime's RunOptions: ``terminate`` set makes ``run`` raise :class:`Fail` before
    running (a run already on the NPU is not interrupted); the rest has no effect."""

    _FIELDS = {
        "log_severity_level": (int, -1),
        "log_verbosity_level": (int, 0),
        "logid": (str, ""),
        "terminate": (bool, False),
        "only_execute_path_to_fetches": (bool, False),
    }

    def add_run_config_entry(self, key: str, value: str) -> None:
        """Keep a config entry (no effect here)."""
        self._add_entry(key, value)

    def get_run_config_entry(self, key: str) -> str:
        """An entry added before; RuntimeError (as onnxruntime) for one that was not."""
        return self._get_entry(key)


def check_run_options(run_options: Any) -> None:
    """TypeError for what is not RunOptions; :class:`Fail` when ``terminate`` is set."""
    if run_options is None:
        return
    if not isinstance(run_options, RunOptions):
        raise TypeError(
            f"run_options must be rkrt.ort.RunOptions or None, not {type(run_options).__name__}"
        )
    if run_options.terminate:
        raise Fail("Exiting due to terminate flag being set to true.")
