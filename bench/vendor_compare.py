"""Per-call time, C calls and memory growth of RKNNLite, rkrt and the raw cffi floor.

Every line loads the same librknnrt.so in this one process, so the lines differ only in their
Python and binding layers:
  floor     rknn_inputs_set, rknn_run, rknn_outputs_get, rknn_outputs_release through cffi on
            structs built once (the least any Python binding can do per call)
  run       rkrt.Session.run(x)
  bind      rkrt's zero-copy loop: b.inputs[0][...] = x; b.run(); y = b.outputs[0]
  rknnlite  the vendor's RKNNLite.inference(inputs=[x])   (aarch64 only)

The compared lines are interleaved in blocks (the machine is shared and noisy); ratios are the
median over blocks of the ratio of per-block medians, so only figures from one run are compared.

Where it runs: in the emulated aarch64 lane (bench/run_all.py starts it under qemu), natively
on x86_64 with `--lines floor,run,bind`, or on a real board with the real runtime:
    python3 bench/vendor_compare.py --library /usr/lib/librknnrt.so \
        --model mlp=/path/to/model.rknn --json result.json
The default models are the test double's (4-100-3 and 64-256-256-10, fp16, batch 1); C-call
counts need the test double's counters and are left out on a real runtime.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cffi
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))
from measure import rss_growth, time_calls  # noqa: E402

HEADER = REPO / "native_headers" / "rknn_api.h"
ALL_LINES = ("floor", "run", "bind", "rknnlite")
DEFAULT_LIBRARY = "/usr/lib/librknnrt.so"


@dataclass(frozen=True)
class Settings:
    """How much to measure: latency blocks, calls per block, calls for the RSS check."""

    blocks: int = 30
    block_calls: int = 300
    warmup: int = 300
    rss_calls: int = 100_000

    @classmethod
    def quick(cls) -> Settings:
        return cls(blocks=4, block_calls=30, warmup=20, rss_calls=500)


@dataclass
class BenchModel:
    """A model file plus one input for it and, for the test double's models, the expected output."""

    name: str
    path: Path
    x: np.ndarray
    expected: np.ndarray | None = None


@dataclass
class Line:
    """One way of making an inference: a no-argument call and how to clean up after it."""

    call: Callable[[], Any]
    close: Callable[[], None]
    result: Callable[[], np.ndarray]  # one checked inference, compared with the model's reference


# --- the models ---------------------------------------------------------------------------


def fake_models(workdir: Path) -> list[BenchModel]:
    """The test double's two MLPs, saved to workdir: 4-100-3 and 64-256-256-10, fp16, batch 1."""
    from fake_rknnrt import Dense, FakeModel

    rng = np.random.default_rng(7)
    specs = {"4-100-3 fp16": (4, 100, 3), "64-256-256-10 fp16": (64, 256, 256, 10)}
    models = []
    for name, widths in specs.items():
        layers = [
            Dense(
                rng.standard_normal((a, b)).astype(np.float32) / np.sqrt(a),
                rng.standard_normal(b).astype(np.float32) * 0.1,
                "softmax" if i == len(widths) - 2 else "relu",
            )
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))
        ]
        model = FakeModel(layers=layers, dtype="float16")
        path = workdir / (name.replace(" ", "-") + ".rknn")
        model.save(path)
        x = rng.standard_normal((1, widths[0])).astype(np.float32)
        models.append(BenchModel(name, path, x, model.reference(x)[0]))
    return models


def real_model(spec: str, library: str) -> BenchModel:
    """NAME=PATH of a real .rknn file; its input is random float32 of the queried shape."""
    name, sep, path = spec.partition("=")
    if not sep:
        raise SystemExit(f"--model expects NAME=PATH, got {spec!r}")
    floor = RawFloor(Path(path).read_bytes(), library)
    shape = floor.input_shape
    floor.close()
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    return BenchModel(name, Path(path), x)


# --- the lines ----------------------------------------------------------------------------


class RawFloor:
    """The raw cffi call sequence on structs built once; return codes checked outside the loop."""

    def __init__(self, blob: bytes, library: str) -> None:
        self.ffi = ffi = cffi.FFI()
        ffi.cdef(HEADER.read_text())
        self.lib = lib = ffi.dlopen(library)
        ctx = ffi.new("rknn_context *")
        self._blob = ffi.from_buffer(blob)
        self._check(lib.rknn_init(ctx, self._blob, len(blob), 0, ffi.NULL), "rknn_init")
        self.ctx = ctx[0]
        num = ffi.new("rknn_input_output_num *")
        self._check(
            lib.rknn_query(self.ctx, lib.RKNN_QUERY_IN_OUT_NUM, num, ffi.sizeof(num[0])),
            "rknn_query",
        )
        attr = ffi.new("rknn_tensor_attr *")
        attr.index = 0
        self._check(
            lib.rknn_query(self.ctx, lib.RKNN_QUERY_INPUT_ATTR, attr, ffi.sizeof(attr[0])),
            "rknn_query",
        )
        self.input_shape = tuple(attr.dims[i] for i in range(attr.n_dims))
        self.input_fmt = attr.fmt
        self.n_outputs = num.n_output
        self.inputs = ffi.new("rknn_input[1]")
        self.outputs = ffi.new(f"rknn_output[{num.n_output}]")
        for i in range(num.n_output):
            self.outputs[i].index = i
            self.outputs[i].want_float = 1

    def _check(self, code: int, function: str) -> None:
        if code != 0:
            raise RuntimeError(f"{function} returned {code} in the raw floor line")

    def bind_input(self, x: np.ndarray) -> None:
        """Point the prebuilt rknn_input at x (float32, C-contiguous, kept alive by the caller)."""
        self._x = x
        inp = self.inputs[0]
        inp.index = 0
        inp.buf = self.ffi.from_buffer(x)
        inp.size = x.nbytes
        inp.pass_through = 0
        inp.type = self.lib.RKNN_TENSOR_FLOAT32
        inp.fmt = self.input_fmt

    def call(self) -> None:
        lib, ctx, n = self.lib, self.ctx, self.n_outputs
        lib.rknn_inputs_set(ctx, 1, self.inputs)
        lib.rknn_run(ctx, self.ffi.NULL)
        lib.rknn_outputs_get(ctx, n, self.outputs, self.ffi.NULL)
        lib.rknn_outputs_release(ctx, n, self.outputs)

    def checked_result(self) -> np.ndarray:
        """One checked call sequence, returning the first output (proves the loop does work)."""
        lib, ctx, ffi = self.lib, self.ctx, self.ffi
        self._check(lib.rknn_inputs_set(ctx, 1, self.inputs), "rknn_inputs_set")
        self._check(lib.rknn_run(ctx, ffi.NULL), "rknn_run")
        self._check(
            lib.rknn_outputs_get(ctx, self.n_outputs, self.outputs, ffi.NULL), "rknn_outputs_get"
        )
        out = self.outputs[0]
        y = np.frombuffer(ffi.buffer(out.buf, out.size), dtype=np.float32).copy()
        self._check(
            lib.rknn_outputs_release(ctx, self.n_outputs, self.outputs), "rknn_outputs_release"
        )
        return y

    def close(self) -> None:
        if self.ctx:
            self.lib.rknn_destroy(self.ctx)
            self.ctx = 0


def make_line(kind: str, model: BenchModel, library: str) -> Line:
    """Open the model for one line and return its per-inference call."""
    x = model.x
    if kind == "floor":
        floor = RawFloor(model.path.read_bytes(), library)
        floor.bind_input(x)
        return Line(floor.call, floor.close, floor.checked_result)
    if kind == "run":
        import rkrt

        session = rkrt.Session(model.path, library=library)
        run = session.run
        return Line(lambda: run(x), session.close, lambda: run(x)[0])
    if kind == "bind":
        import rkrt

        session = rkrt.Session(model.path, library=library)
        binding = session.bind()
        bound_in, bound_run, outputs = binding.inputs[0], binding.run, binding.outputs

        def zero_copy() -> np.ndarray:
            bound_in[...] = x
            bound_run()
            return outputs[0]

        def close() -> None:
            binding.close()
            session.close()

        return Line(zero_copy, close, lambda: np.array(zero_copy(), dtype=np.float32))
    if kind == "rknnlite":
        from rknnlite.api import RKNNLite

        lite = RKNNLite(verbose=False)
        if lite.load_rknn(str(model.path)) != 0 or lite.init_runtime() != 0:
            raise RuntimeError(
                "RKNNLite could not load the model or start its runtime; under qemu run "
                "bench/aarch64_lane.py (it provides the board files RKNNLite checks)"
            )
        inputs = [x]
        inference = lite.inference
        return Line(
            lambda: inference(inputs=inputs), lite.release, lambda: inference(inputs=inputs)[0]
        )
    raise ValueError(f"unknown line {kind!r}; expected one of {ALL_LINES}")


# --- measuring ----------------------------------------------------------------------------


class CallCounter:
    """The test double's per-function call counters; absent on a real runtime."""

    def __init__(self, library: str) -> None:
        try:
            from fake_rknnrt import FakeRuntime

            self.runtime = FakeRuntime(library)
        except (ImportError, OSError, AttributeError):
            self.runtime = None
        self.functions: tuple[str, ...] = () if self.runtime is None else self.runtime.functions

    def snapshot(self) -> dict[str, int]:
        rt = self.runtime
        return {} if rt is None else {f: rt.calls(f) for f in self.functions}

    def per_inference(self, call: Callable[[], Any], n: int) -> dict[str, float] | None:
        """C calls per inference by function, from n calls; None without counters."""
        if self.runtime is None:
            return None
        before = self.snapshot()
        for _ in range(n):
            call()
        after = self.snapshot()
        return {f: (after[f] - before[f]) / n for f in self.functions if after[f] != before[f]}

    def live(self) -> dict[str, int] | None:
        return None if self.runtime is None else dict(self.runtime.live())


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def measure_model(
    model: BenchModel, kinds: list[str], library: str, settings: Settings, counter: CallCounter
) -> dict[str, Any]:
    """All lines on one model: latency blocks, block ratios, C calls and RSS growth."""
    lines = {k: make_line(k, model, library) for k in kinds}
    try:
        for kind, line in lines.items():
            got = np.asarray(line.result(), dtype=np.float32).reshape(-1)
            if model.expected is not None and not np.allclose(
                got, model.expected.reshape(-1), rtol=2e-2, atol=2e-3
            ):
                raise RuntimeError(
                    f"line {kind} on {model.name} returned {got[:4]}..., expected "
                    f"{model.expected.reshape(-1)[:4]}...: the benchmark would time a broken path"
                )
            time_calls(line.call, settings.warmup)

        samples: dict[str, list[int]] = {k: [] for k in kinds}
        block_medians: dict[str, list[float]] = {k: [] for k in kinds}
        for block in range(settings.blocks):
            # Rotate the order so no line always runs right after the same neighbour.
            order = kinds[block % len(kinds) :] + kinds[: block % len(kinds)]
            gc.collect()
            for kind in order:
                block_samples = time_calls(lines[kind].call, settings.block_calls)
                samples[kind].extend(block_samples)
                block_medians[kind].append(statistics.median(block_samples))

        results: dict[str, Any] = {}
        for kind in kinds:
            us = [s / 1000 for s in samples[kind]]
            calls = counter.per_inference(lines[kind].call, 100)
            results[kind] = {
                "median_us": statistics.median(us),
                "p99_us": percentile(us, 99),
                "c_calls_per_inference": None if calls is None else sum(calls.values()),
                "c_calls_by_function": calls,
                "rss_calls": settings.rss_calls,
                "rss_growth_bytes": rss_growth(lines[kind].call, settings.rss_calls),
                "samples_us": [round(v, 2) for v in us],
            }
        ratios = {}
        for num, den in (
            ("run", "floor"),
            ("bind", "floor"),
            ("rknnlite", "floor"),
            ("rknnlite", "run"),
            ("rknnlite", "bind"),
        ):
            if num in kinds and den in kinds:
                per_block = [a / b for a, b in zip(block_medians[num], block_medians[den])]
                ratios[f"{num}/{den}"] = statistics.median(per_block)
        # What each binding adds to the runtime's own work: its time above the floor.
        # Its spread (half the interquartile range over blocks) bounds what can be resolved.
        over_floor, over_floor_spread = {}, {}
        if "floor" in kinds:
            for kind in kinds:
                diffs = [a - b for a, b in zip(block_medians[kind], block_medians["floor"])]
                over_floor[kind] = statistics.median(diffs) / 1000
                q1, _, q3 = statistics.quantiles(diffs, n=4) if len(diffs) > 1 else (0, 0, 0)
                over_floor_spread[kind] = (q3 - q1) / 2000
        return {
            "name": model.name,
            "lines": results,
            "ratios": ratios,
            "over_floor_us": over_floor,
            "over_floor_spread_us": over_floor_spread,
        }
    finally:
        for line in lines.values():
            line.close()


def available_lines() -> list[str]:
    """Every line this machine can run: RKNNLite only where its aarch64 wheel imports."""
    kinds = ["floor", "run", "bind"]
    try:
        import rknnlite.api  # noqa: F401

        kinds.append("rknnlite")
    except ImportError:
        pass
    return kinds


def environment(library: str) -> dict[str, Any]:
    """What this process ran on, as the guest sees it."""
    info: dict[str, Any] = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cffi": cffi.__version__,
        "library": os.path.realpath(library),
    }
    try:
        from importlib.metadata import version

        info["rknn_toolkit_lite2"] = version("rknn-toolkit-lite2")
    except Exception:
        info["rknn_toolkit_lite2"] = None
    return info


def run(
    kinds: list[str], library: str, settings: Settings, model_specs: list[str]
) -> dict[str, Any]:
    """Measure every model on every line; the JSON-ready result."""
    counter = CallCounter(library)
    timer = statistics.median(time_calls(lambda: None, 2000)) / 1000
    with tempfile.TemporaryDirectory(prefix="rkrt-bench-") as tmp:
        if model_specs:
            models = [real_model(spec, library) for spec in model_specs]
        else:
            models = fake_models(Path(tmp))
        measured = [measure_model(m, kinds, library, settings, counter) for m in models]
    return {
        "environment": environment(library),
        "settings": settings.__dict__,
        "timer_overhead_us": timer,
        "live_after": counter.live(),
        "models": measured,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--library",
        default=os.environ.get("RKRT_LIBRARY", DEFAULT_LIBRARY),
        help="librknnrt.so every line loads (default: $RKRT_LIBRARY or %(default)s)",
    )
    parser.add_argument(
        "--lines",
        default=None,
        help=f"comma-separated subset of {','.join(ALL_LINES)} (default: all available)",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a real .rknn model (repeatable); default: the test double's models",
    )
    parser.add_argument("--quick", action="store_true", help="a few iterations (smoke test)")
    parser.add_argument("--blocks", type=int)
    parser.add_argument("--block-calls", type=int)
    parser.add_argument("--rss-calls", type=int)
    parser.add_argument("--json", type=Path, help="write the full result (with samples) here")
    args = parser.parse_args(argv)

    settings = Settings.quick() if args.quick else Settings()
    overrides = {
        "blocks": args.blocks,
        "block_calls": args.block_calls,
        "rss_calls": args.rss_calls,
    }
    settings = Settings(**{**settings.__dict__, **{k: v for k, v in overrides.items() if v}})
    kinds = args.lines.split(",") if args.lines else available_lines()
    unknown = set(kinds) - set(ALL_LINES)
    if unknown:
        parser.error(f"unknown lines {sorted(unknown)}; expected a subset of {ALL_LINES}")

    result = run(kinds, args.library, settings, args.model)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result))
    from report import format_table

    print(format_table([(result["environment"]["machine"], result)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
