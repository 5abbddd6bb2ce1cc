"""Per-call overhead of rkrt's paths against the raw cffi floor, on the test-double runtime.

Lines (one inference each, 4-100-3 fp16 model, batch 1, float32 input):
  floor        rknn_inputs_set, rknn_run, rknn_outputs_get, rknn_outputs_release through cffi on
               structs built once, outputs written into a preallocated array (is_prealloc=1)
  floor_alloc  the same, outputs allocated by the runtime and copied out (the vendor's way)
  run          session.run(x)
  run_out      session.run(x, out=[y])
  bind         b.inputs[0][...] = x; b.run(); y = b.outputs[0]   (float32 buffers)
  bind_fp16    the same with the model's native float16 buffers and a float16 x

The lines are interleaved in blocks (order rotated per block); each call is timed on its own.
A ratio is the median over blocks of (line's block median / floor's block median). RSS growth
is measured over --rss-calls calls of each rkrt line after a warm-up.

    .venv/bin/python bench/session_overhead.py            # full run (about a minute)
    .venv/bin/python bench/session_overhead.py --quick    # smoke test (seconds)

Under aarch64 emulation (the lane of bench/aarch64_lane.py, built once):
    .venv/bin/python -c "import sys; sys.path.insert(0, 'bench'); import aarch64_lane as a; \
        l = a.ensure_lane(); l.run(['bench/session_overhead.py', '--library', a.GUEST_LIBRARY, \
        '--output', 'bench/results/session_overhead_aarch64.json'])"
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from fake_rknnrt import Dense, FakeModel, FakeRuntime, build_library  # noqa: E402
from measure import rss_growth, time_calls  # noqa: E402

import rkrt  # noqa: E402
from rkrt._ffi import ffi  # noqa: E402

RESULTS = REPO / "bench" / "results"
TARGETS = {"run": 1.5, "bind": 1.2}


def model_4_100_3() -> FakeModel:
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.5, (4, 100)).astype(np.float32)
    w2 = rng.normal(0, 0.1, (100, 3)).astype(np.float32)
    layers = [
        Dense(w1, np.zeros(100, np.float32), "relu"),
        Dense(w2, np.zeros(3, np.float32), "softmax"),
    ]
    return FakeModel(layers=layers, dtype="float16")


class RawFloor:
    """The four-call sequence on prebuilt structs; return codes checked once, outside the loop."""

    def __init__(self, lib: Any, blob: bytes, x: np.ndarray, prealloc: bool) -> None:
        self.lib = lib
        ctx = ffi.new("rknn_context*")
        assert lib.rknn_init(ctx, ffi.from_buffer(blob), len(blob), 0x2000, ffi.NULL) == 0
        self.ctx = ctx[0]
        self.x, self.y = x, np.empty((1, 3), np.float32)
        self.inputs = ffi.new("rknn_input[1]")
        c = self.inputs[0]
        c.index, c.buf, c.size, c.type, c.fmt = 0, ffi.from_buffer(x), x.nbytes, 0, 3
        self.outputs = ffi.new("rknn_output[1]")
        o = self.outputs[0]
        o.index, o.want_float, o.is_prealloc = 0, 1, int(prealloc)
        if prealloc:
            o.buf, o.size = ffi.from_buffer(self.y, require_writable=True), self.y.nbytes
        self.call = self.call_prealloc if prealloc else self.call_alloc

    def call_prealloc(self) -> np.ndarray:
        lib, ctx, outputs = self.lib, self.ctx, self.outputs
        lib.rknn_inputs_set(ctx, 1, self.inputs)
        lib.rknn_run(ctx, ffi.NULL)
        lib.rknn_outputs_get(ctx, 1, outputs, ffi.NULL)
        lib.rknn_outputs_release(ctx, 1, outputs)
        return self.y

    def call_alloc(self) -> np.ndarray:
        lib, ctx, outputs = self.lib, self.ctx, self.outputs
        lib.rknn_inputs_set(ctx, 1, self.inputs)
        lib.rknn_run(ctx, ffi.NULL)
        lib.rknn_outputs_get(ctx, 1, outputs, ffi.NULL)
        y = np.frombuffer(ffi.buffer(outputs[0].buf, 12), np.float32).copy()
        lib.rknn_outputs_release(ctx, 1, outputs)
        return y

    def close(self) -> None:
        self.lib.rknn_destroy(self.ctx)


def make_lines(library: Path, blob: bytes, x: np.ndarray) -> tuple[dict[str, Callable], list]:
    lib = ffi.dlopen(str(library))
    floor, floor_alloc = RawFloor(lib, blob, x, True), RawFloor(lib, blob, x, False)
    s_run, s_out, s_bind, s_fp16 = (rkrt.Session(blob, library=library) for _ in range(4))
    b32, b16 = s_bind.bind(input_dtype=np.float32), s_fp16.bind(input_dtype=None, output_dtype=None)
    x16 = x.astype(np.float16)
    run, run_out, y = s_run.run, s_out.run, [np.empty((1, 3), np.float32)]
    in32, out32, run32 = b32.inputs[0], b32.outputs, b32.run
    in16, out16, run16 = b16.inputs[0], b16.outputs, b16.run

    def bind() -> np.ndarray:
        in32[...] = x
        run32()
        return out32[0]

    def bind_fp16() -> np.ndarray:
        in16[...] = x16
        run16()
        return out16[0]

    lines = {
        "floor": floor.call,
        "floor_alloc": floor_alloc.call,
        "run": lambda: run(x)[0],
        "run_out": lambda: run_out(x, out=y)[0],
        "bind": bind,
        "bind_fp16": bind_fp16,
    }
    return lines, [floor, floor_alloc, b32, b16, s_run, s_out, s_bind, s_fp16]


def timer_overhead_ns(n: int = 20000) -> float:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(n):
        t0 = clock()
        samples.append(clock() - t0)
    return statistics.median(samples)


def rss_growth_after_warmup(call: Callable[[], Any], n: int) -> int:
    for _ in range(min(n, 2000)):
        call()
    return rss_growth(call, n)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few blocks, for a smoke test")
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--block-calls", type=int, default=500)
    parser.add_argument("--rss-calls", type=int, default=100_000)
    parser.add_argument("--output", type=Path, default=RESULTS / "session_overhead.json")
    parser.add_argument("--library", type=Path, help="a built test double (default: build one "
                        "with gcc); e.g. the cross-built one for the aarch64 lane")  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        args.blocks, args.block_calls, args.rss_calls = 3, 50, 1000

    library = args.library or build_library()
    fake = FakeRuntime(library)
    model = model_4_100_3()
    blob = model.to_bytes()
    x = np.random.default_rng(1).normal(size=(1, 4)).astype(np.float32)
    want = model.reference(x)[0]
    lines, owned = make_lines(library, blob, x)
    try:
        for name, call in lines.items():
            got = np.asarray(call(), np.float32).reshape(want.shape)
            if not np.allclose(got, want, rtol=2e-2, atol=2e-3):
                raise AssertionError(f"line {name} computes {got}, numpy says {want}")
        names = list(lines)
        samples: dict[str, list[int]] = {n: [] for n in names}
        block_medians: dict[str, list[float]] = {n: [] for n in names}
        for b in range(args.blocks):
            order = names[b % len(names) :] + names[: b % len(names)]
            for name in order:
                s = time_calls(lines[name], args.block_calls)
                samples[name] += s
                block_medians[name].append(statistics.median(s))
        overhead = timer_overhead_ns()
        rss = {
            n: rss_growth_after_warmup(lines[n], args.rss_calls) for n in ("run", "run_out", "bind")
        }
        fake.reset()
    finally:
        for obj in owned:
            obj.close()
    if fake.live() != {"contexts": 0, "mems": 0, "outputs": 0}:
        raise AssertionError(f"the benchmark leaked runtime objects: {fake.live()}")

    rows = {}
    for name in names:
        s = np.array(samples[name], dtype=np.float64) - overhead
        ratio = statistics.median(
            m / f for m, f in zip(block_medians[name], block_medians["floor"])
        )
        rows[name] = {
            "median_us": float(np.median(s)) / 1e3,
            "p99_us": float(np.percentile(s, 99)) / 1e3,
            "ratio_to_floor": ratio,
            "rss_growth_bytes": rss.get(name),
        }
    result = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "timer_overhead_ns": overhead,
        "lines": rows,
        "targets": {k: {"max_ratio": v, "ratio": rows[k]["ratio_to_floor"],
                        "ok": rows[k]["ratio_to_floor"] <= v} for k, v in TARGETS.items()},
    }  # fmt: skip
    print(f"{'line':<12} {'median µs':>10} {'p99 µs':>9} {'x floor':>8} {'RSS growth':>12}")
    for name, row in rows.items():
        grown = row["rss_growth_bytes"]
        growth = "" if grown is None else f"{grown / 1024:.0f} KiB"
        print(f"{name:<12} {row['median_us']:>10.2f} {row['p99_us']:>9.2f} "
              f"{row['ratio_to_floor']:>8.2f} {growth:>12}")  # fmt: skip
    for name, t in result["targets"].items():
        print(f"target {name} <= {t['max_ratio']}x floor: {t['ratio']:.2f}x "
              f"{'PASS' if t['ok'] else 'FAIL'}")  # fmt: skip
    print(f"RSS over {args.rss_calls} calls per line; timer overhead {overhead:.0f} ns subtracted")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.output}")
    return result


if __name__ == "__main__":
    main()
