"""Per-layer call overhead of rkrt.MatMul against Session.run of an equivalent compiled model.

Lines (one dense layer, float16 on the NPU, float32 in and out, batch M):
  session    session.run(x, out=[y]) on a one-layer model (a FakeModel here, or --model)
  matmul     mm.run(x, out=y)                            (rkrt.MatMul, float32 A)
  bind       b.a[...] = x; b.run()                       (rkrt.MatMul zero-copy views)
  floor      rknn_matmul_run(ctx) alone through cffi, A already in place

The lines are interleaved in blocks (order rotated per block), each call timed on its own;
a ratio is the median over blocks of the block medians' ratio. Only ratios mean anything
on a shared machine.

    .venv/bin/python bench/matmul_overhead.py                    # test double, 100x100 layer
    .venv/bin/python bench/matmul_overhead.py --quick            # smoke test (a second)
    .venv/bin/python bench/matmul_overhead.py --shape 1,784,128

On a board, compile the same one-layer model with emit (e.g. an MLPRegressor with no hidden
layer, float16) and run:

    python bench/matmul_overhead.py --library /usr/lib/librknnrt.so --model dense.rknn
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import rkrt  # noqa: E402
from rkrt.matmul import MatMul  # noqa: E402

LINES = ("session", "matmul", "bind", "floor")
RATIOS = (("matmul", "session"), ("bind", "session"), ("matmul", "floor"), ("session", "floor"))


def _fake_model(m: int, k: int, n: int, seed: int = 0) -> tuple[bytes, np.ndarray]:
    from fake_rknnrt import Dense, FakeModel

    rng = np.random.default_rng(seed)
    w = rng.normal(0, 1 / np.sqrt(k), (k, n)).astype(np.float32)
    model = FakeModel(layers=[Dense(w, np.zeros(n, np.float32), "identity")], dtype="float16",
                      batch_sizes=(m,))  # fmt: skip
    return model.to_bytes(), w


def _timed(fn: Callable[[], Any], calls: int) -> float:
    """Median of `calls` single-call timings, in microseconds."""
    samples = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        t0 = clock()
        fn()
        samples.append(clock() - t0)
    return statistics.median(samples) / 1e3


def measure(shape: tuple[int, int, int], blocks: int, block_calls: int,
            library: Optional[str], model: Optional[str]) -> dict[str, Any]:  # fmt: skip
    """Block medians per line and the median ratios."""
    if library is None:
        from fake_rknnrt import build_library

        library = str(build_library())
    if model is None:
        blob, w = _fake_model(*shape)
        session = rkrt.Session(blob, library=library)
    else:
        session = rkrt.Session(model, library=library)
        (spec_in,), (spec_out,) = session.inputs, session.outputs
        shape = (spec_in.shape[0], spec_in.shape[1], spec_out.shape[1])
        w = np.random.default_rng(0).normal(size=shape[1:]).astype(np.float32)
    m, k, n = shape
    x = np.random.default_rng(1).normal(size=(m, k)).astype(np.float32)
    y_session, y_mm = np.empty((m, n), np.float32), np.empty((m, n), np.float32)
    with session, MatMul(m, k, n, library=library) as mm:
        mm.set_b(w)
        binding = mm.bind()
        tile = mm._tiles[0]
        run_c, handle = tile._run, tile.handle  # the bare rknn_matmul_run

        def bind_call() -> None:
            binding.a[...] = x
            binding.run()

        calls = {
            "session": lambda: session.run(x, out=[y_session]),
            "matmul": lambda: mm.run(x, out=y_mm),
            "bind": bind_call,
            "floor": lambda: run_c(handle),
        }
        for fn in calls.values():  # warm-up
            _timed(fn, 50)
        medians: dict[str, list[float]] = {name: [] for name in LINES}
        for block in range(blocks):
            order = LINES[block % len(LINES) :] + LINES[: block % len(LINES)]
            for name in order:
                medians[name].append(_timed(calls[name], block_calls))
    ratios = {
        f"{a}/{b}": statistics.median(x / y for x, y in zip(medians[a], medians[b]))
        for a, b in RATIOS
    }
    return {
        "shape": {"M": m, "K": k, "N": n},
        "library": library,
        "median_us": {name: statistics.median(v) for name, v in medians.items()},
        "ratios": ratios,
        "settings": {"blocks": blocks, "block_calls": block_calls},
    }


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few calls: a smoke test")
    parser.add_argument("--shape", default="1,100,100", help="M,K,N of the layer")
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--block-calls", type=int, default=500)
    parser.add_argument("--library", help="a librknnrt.so (default: the test double, built)")
    parser.add_argument("--model", help="a one-layer .rknn for the session line (board runs)")
    parser.add_argument("--json", type=Path, help="also write the result there")
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    if len(shape) != 3:
        parser.error(f"--shape must be M,K,N, got {args.shape!r}")
    blocks, block_calls = (3, 20) if args.quick else (args.blocks, args.block_calls)
    result = measure(shape, blocks, block_calls, args.library, args.model)  # type: ignore[arg-type]
    s = result["shape"]
    print(f"one dense layer M={s['M']} K={s['K']} N={s['N']} float16, "
          f"{blocks} blocks x {block_calls} calls, {result['library']}")  # fmt: skip
    for name, us in result["median_us"].items():
        print(f"  {name:8s} {us:9.2f} us")
    for name, ratio in result["ratios"].items():
        print(f"  {name:16s} {ratio:6.2f}x")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
