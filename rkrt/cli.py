"""``python -m rkrt info MODEL`` and ``python -m rkrt bench MODEL``."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Callable, Optional, Sequence, TextIO

import numpy as np

from .cores import SOC_CORES, CoreMask, detect_soc, parse_mask
from .errors import DTypeError, RKNNError, RuntimeNotFoundError, ShapeError
from .session import Session


def _info(args: argparse.Namespace, out: TextIO) -> None:
    with Session(args.model, library=args.library) as s:
        api, drv = s.sdk_version
        print(f"model:          {args.model}", file=out)
        print(f"runtime:        {s._context.runtime.path}", file=out)
        print(f"sdk version:    api {api}, driver {drv}", file=out)
        for kind, specs in (("inputs", s.inputs), ("outputs", s.outputs)):
            print(f"{kind}:", file=out)
            for t in specs:
                quant = f" scale={t.scale:g} zp={t.zero_point}" if t.qnt_type != "NONE" else ""
                line = (f"  #{t.index} {t.name!r:<16} shape={t.shape} dtype={t.dtype} "
                        f"format={t.format} qnt={t.qnt_type}{quant} size={t.size}B")  # fmt: skip
                print(line, file=out)
        if s.is_dynamic:
            print("input shapes:   " + ", ".join(str(x) for x in s.input_shapes), file=out)
        print(f"custom string:  {s.custom_string!r}", file=out)
        mem = s.mem_size
        print(f"memory:         weights {mem['total_weight_size']} B, internal "
              f"{mem['total_internal_size']} B", file=out)  # fmt: skip


def _masks(args: argparse.Namespace) -> list[CoreMask]:
    if args.core_mask is not None:
        return [parse_mask(args.core_mask)] * args.threads
    cores = SOC_CORES.get(detect_soc() or "", (CoreMask.AUTO,)) if args.threads > 1 else ()
    cores = cores or (CoreMask.AUTO,)
    return [cores[i % len(cores)] for i in range(args.threads)]


def _loop(session: Session, zero_copy: bool, rng: np.random.Generator) -> Callable[[], object]:
    """One inference on ``session``, with inputs made once."""
    if zero_copy:
        binding = session.bind()
        for buf in binding.inputs:
            buf[...] = rng.normal(size=buf.shape)
        return binding.run
    xs = [rng.normal(size=t.shape).astype(np.float32) for t in session.inputs]
    run = session.run
    return lambda: run(*xs)


class _Progress:
    """A one-line progress indicator on stderr, shown only for runs longer than a second."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total, self.stream = total, stream
        self.start = time.monotonic()
        self.shown = False

    def update(self, done: int) -> None:
        elapsed = time.monotonic() - self.start
        if elapsed < 1.0:
            return
        self.shown = True
        rate = done / elapsed
        eta = (self.total - done) / rate if rate else float("inf")
        width = 30
        filled = int(width * done / self.total)
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
                          f"{rate:,.0f}/s eta {eta:.0f}s ")  # fmt: skip
        self.stream.flush()

    def finish(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _bench(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    if args.n < 1 or args.threads < 1:
        raise ValueError("-n and --threads must be at least 1")
    masks = _masks(args)
    first = Session(args.model, core_mask=masks[0], library=args.library)
    sessions = [first] + [first.dup(core_mask=m) for m in masks[1:]]
    try:
        rng = np.random.default_rng(0)
        calls = [_loop(s, args.zero_copy, rng) for s in sessions]
        for call in calls:  # warm-up, and a failure shows before timing starts
            for _ in range(min(10, args.n)):
                call()
        share = [args.n // args.threads + (i < args.n % args.threads) for i in range(args.threads)]
        samples = [np.zeros(k, np.int64) for k in share]
        done = [0] * args.threads
        errors: list[BaseException] = []

        def work(i: int) -> None:
            call, mine, clock = calls[i], samples[i], time.perf_counter_ns
            try:
                for k in range(share[i]):
                    t0 = clock()
                    call()
                    mine[k] = clock() - t0
                    done[i] = k + 1
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(args.threads)]
        progress = _Progress(args.n, err)
        start = time.perf_counter()
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            threads[0].join(0.25)
            progress.update(sum(done))
        wall = time.perf_counter() - start
        progress.finish()
        if errors:
            raise errors[0]
    finally:
        for s in sessions:
            s.close()
    us = np.concatenate(samples) / 1e3
    mode = "zero-copy" if args.zero_copy else "run"
    print(f"{args.n} inferences, {args.threads} thread(s), {mode}, core masks "
          f"{', '.join(m.name for m in masks)}", file=out)  # fmt: skip
    print(f"latency µs: p50 {np.percentile(us, 50):.1f}  p99 {np.percentile(us, 99):.1f}  "
          f"mean {us.mean():.1f}  max {us.max():.1f}", file=out)  # fmt: skip
    print(f"throughput: {args.n / wall:,.1f} inferences/s", file=out)


def main(argv: Optional[Sequence[str]] = None, out: TextIO = sys.stdout,
         err: TextIO = sys.stderr) -> int:  # fmt: skip
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m rkrt", description="Inspect or time a .rknn model."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="inputs, outputs, SDK version, custom string")
    bench = sub.add_parser("bench", help="latency (p50/p99) and throughput")
    for p in (info, bench):
        p.add_argument("model", help="path of the .rknn model")
        p.add_argument("--library", help="librknnrt.so to use (default: $RKRT_LIBRARY, system)")
    bench.add_argument("-n", type=int, default=1000, help="inferences to time (default 1000)")
    bench.add_argument("--core-mask", help="e.g. AUTO, 0, 0_1, 0_1_2, ALL (default: per SoC)")
    bench.add_argument("--threads", type=int, default=1, help="threads, one context each")
    bench.add_argument("--zero-copy", action="store_true", help="time IOBinding.run()")
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            _info(args, out)
        else:
            _bench(args, out, err)
    except (OSError, RKNNError, RuntimeNotFoundError, DTypeError, ShapeError, ValueError) as exc:
        print(f"rkrt: error: {exc}", file=err)
        return 1
    return 0
