"""Throughput over 3 contexts, per-call overhead and memory under load: rkrt against
ztu_somemodelruntime_ez_rknn_async 0.11.0, both on the test double, in one process.

Every line loads the same test-double librknnrt.so (rkrt through RKRT_LIBRARY, the peer
through ZTU_RKNPU2_RUNTIME_LIBRARY), opens the same model file (4-100-3 fp16, batch 1, saved
with the "RKNN" magic the peer requires) on 3 contexts (RK3588 cores 0, 1, 2):

  throughput  the test double sleeps RUN_DELAY_US in each rknn_run (no lock held, so
              contexts overlap); N requests per line, lines interleaved in rounds, order
              rotated. The ideal is N * t / 3 with t a single Session's time per call in the
              same round. "gap": the mean time a context sat between two of its runs
              (the double measures it from one rknn_run's return to the next's entry),
              i.e. what the runtime adds around each run; "run": the mean time an
              rknn_run took, the delay plus what its sleep overshot (how soon the
              machine gave the thread a CPU back), which no runtime controls; "crowded": the
              share of runs that returned on the same CPU as another context's run, less
              than CROWDED_US apart (the second thread's wake-up then comes later, as
              measured on 2 shared cores). The same again with
              SHORT_DELAY_US, where what each runtime adds per request weighs more, and
              with no delay (the cost of each API per request).
  run_batch   3000 rows of a model compiled for batches 32, 8 and 1, on 3 contexts
              against 1.
  overhead    no delay: per-call time of each binding's synchronous call and IO-binding
              loop (rkrt.ort's and the peer's: the same onnxruntime calls), and of the raw
              cffi floor, in interleaved blocks (bench/vendor_compare.py's
              method); "over floor" is what the binding adds to the runtime's own work.
  memory      10^5 requests through a bounded API, from a producer much faster than the
              NPU (its rate is measured and reported): peak RSS above the start.

    python bench/streaming.py [--quick] [--json PATH]

The peer is installed into .cache/ez_rknn_async by bench/peer.py, never into the venv.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))
from measure import rss_bytes, time_calls  # noqa: E402

CORES = ["CORE_0", "CORE_1", "CORE_2"]
RUN_DELAY_US = 2_000
# A shorter run, where what a runtime adds per request weighs more in throughput; and none at
# all: the time per request is then what each API costs on 3 contexts.
SHORT_DELAY_US = 300
PARTS = (("throughput", RUN_DELAY_US), ("throughput_short", SHORT_DELAY_US),
         ("throughput_no_delay", 0))  # fmt: skip
BATCH_ROWS = 3_000
PEER_SCHEDULE = "0,1,2"
# How close two runs' returns on one CPU must be to count as crowded. Traced on 2 shared
# cores at 2 ms per run: a run due within 20 to 100 us after another context's on the same CPU
# overshot by 70 us on average, 53 us otherwise.
CROWDED_US = 100


@dataclass(frozen=True)
class Settings:
    requests: int = 300
    rounds: int = 15
    blocks: int = 30
    block_calls: int = 300
    rss_requests: int = 100_000
    rss_delay_us: int = 150

    @classmethod
    def quick(cls) -> Settings:
        return cls(requests=30, rounds=2, blocks=3, block_calls=30, rss_requests=600)


def _median_ratio(num: list[float], den: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(num, den))


# --- throughput lines: each returns the seconds N requests took ----------------------------


def rkrt_lines(pool, session, xs: list[np.ndarray], loop) -> dict[str, Callable[[], float]]:
    def single() -> float:
        t0 = time.perf_counter()
        for x in xs:
            session.run(x)
        return time.perf_counter() - t0

    def pool_map() -> float:
        t0 = time.perf_counter()
        pool.map(xs)
        return time.perf_counter() - t0

    def pool_imap() -> float:
        t0 = time.perf_counter()
        for _ in pool.imap(xs):
            pass
        return time.perf_counter() - t0

    def pool_submit() -> float:
        t0 = time.perf_counter()
        futures = [pool.submit(x) for x in xs]
        for f in futures:
            f.result()
        return time.perf_counter() - t0

    async def _imap_async() -> float:
        t0 = time.perf_counter()
        async for _ in pool.imap_async(xs):
            pass
        return time.perf_counter() - t0

    async def _gather() -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*[pool.run_async(x) for x in xs])
        return time.perf_counter() - t0

    return {
        "rkrt Session.run (1 context)": single,
        "rkrt Pool.map": pool_map,
        "rkrt Pool.imap": pool_imap,
        "rkrt Pool.submit": pool_submit,
        "rkrt Pool.imap_async": lambda: loop.run_until_complete(_imap_async()),
        "rkrt Pool.run_async (gather)": lambda: loop.run_until_complete(_gather()),
    }


def peer_lines(sess, xs: list[np.ndarray]) -> dict[str, Callable[[], float]]:
    feeds = [{"input": x} for x in xs]
    n = len(feeds)

    def run_async() -> float:
        done = threading.Event()
        count = [0]

        def callback(outputs, user_data, error) -> None:
            if error:
                raise RuntimeError(error)
            count[0] += 1
            if count[0] == n:
                done.set()

        t0 = time.perf_counter()
        for i, feed in enumerate(feeds):
            sess.run_async(None, feed, callback, i)
        if not done.wait(60):
            raise RuntimeError("ez_rknn_async run_async: callbacks missing after 60 s")
        return time.perf_counter() - t0

    def pipeline(depth: int) -> Callable[[], float]:
        def line() -> float:
            # Result i comes back from call i + depth: feed until the n-th result is out.
            got = 0
            t0 = time.perf_counter()
            for i in range(n + depth):
                if sess.run_pipeline(feeds[i % n], depth=depth, reset=i == 0) is not None:
                    got += 1
                    if got == n:
                        break
            elapsed = time.perf_counter() - t0
            time.sleep(0.02)  # the extra `depth` requests drain before the next line
            return elapsed

        return line

    return {
        "ez_rknn_async run_async": run_async,
        "ez_rknn_async run_pipeline(3)": pipeline(3),
        "ez_rknn_async run_pipeline(6)": pipeline(6),
    }


def throughput(rt, pool, session, peer_sess, settings: Settings, delay_us: int) -> dict[str, Any]:
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((1, 4)).astype(np.float32) for _ in range(settings.requests)]
    loop = asyncio.new_event_loop()
    lines = rkrt_lines(pool, session, xs, loop)
    if peer_sess is not None:
        lines.update(peer_lines(peer_sess, xs))
    rt.set_run_delay(delay_us)
    times: dict[str, list[float]] = {name: [] for name in lines}
    gaps: dict[str, list[float]] = {name: [] for name in lines}
    runs: dict[str, list[float]] = {name: [] for name in lines}
    crowded: dict[str, list[float]] = {name: [] for name in lines}
    names = list(lines)
    try:
        for name in names:  # warm-up: threads started, shapes set
            lines[name]()
        for r in range(settings.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                rt.reset_run_gaps()
                times[name].append(lines[name]())
                gaps[name].append(rt.run_gaps()[0])
                runs[name].append(rt.run_times()[0])
                crowded[name].append(_crowded(rt.run_ends()))
    finally:
        rt.set_run_delay(0)
        loop.close()
    single = times["rkrt Session.run (1 context)"]
    ideal = [s / len(CORES) for s in single]
    result = {}
    for name, ts in times.items():
        result[name] = {
            "median_s": statistics.median(ts),
            "of_ideal": _median_ratio(ideal, ts),
            "x_single": _median_ratio(single, ts),
            "gap_us": statistics.median(gaps[name]) * 1e6,
            "run_us": statistics.median(runs[name]) * 1e6,
            "crowded": statistics.median(crowded[name]),
            "seconds": ts,
        }
    best = _best(result, "rkrt Pool")
    return {"lines": result, "ideal_s": statistics.median(ideal), "delay_us": delay_us,
            "t_per_call_us": statistics.median(single) / settings.requests * 1e6,
            "best_rkrt": best, "peer_vs_rkrt": _peer_vs(result, best)}  # fmt: skip


def _crowded(ends: list[tuple[float, int, int]], window_s: float = CROWDED_US / 1e6) -> float:
    """The share of runs that returned on the same CPU as another context's run, less than
    ``window_s`` apart; ``ends`` as FakeRuntime.run_ends() gives them."""
    by_cpu: dict[int, list[tuple[float, int]]] = {}
    for t, context, cpu in ends:
        by_cpu.setdefault(cpu, []).append((t, context))
    near = 0
    for runs in by_cpu.values():
        runs.sort()
        times = [t for t, _ in runs]
        for t, context in runs:
            lo = bisect.bisect_right(times, t - window_s)
            hi = bisect.bisect_left(times, t + window_s)
            near += any(c != context for _, c in runs[lo:hi])
    return near / len(ends) if ends else 0.0


def _best(lines: dict[str, Any], prefix: str) -> str | None:
    """The fastest line (median time) whose name starts with ``prefix``; None if none does."""
    names = [k for k in lines if k.startswith(prefix)]
    return min(names, key=lambda k: lines[k]["median_s"]) if names else None


def _peer_vs(lines: dict[str, Any], rkrt_best: str) -> dict[str, Any] | None:
    """The peer's best line's time over ``rkrt_best``'s, round by round (> 1: rkrt ahead)."""
    peer_best = _best(lines, "ez_rknn_async")
    if peer_best is None:
        return None
    per_round = [p / r for p, r in zip(lines[peer_best]["seconds"], lines[rkrt_best]["seconds"])]
    low, high = _median_ci(per_round)
    return {"rkrt": rkrt_best, "peer": peer_best, "median": statistics.median(per_round),
            "ci95": [low, high], "verdict": _verdict(low, high),
            "rounds_won": sum(r > 1 for r in per_round), "rounds": len(per_round)}  # fmt: skip


def _median_ci(ratios: list[float], resamples: int = 2000) -> tuple[float, float]:
    """A 95% bootstrap interval of the median of same-round ratios (fixed seed: a rerun of
    the report on the same data gives the same interval)."""
    rng = random.Random(0)
    medians = sorted(
        statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(resamples)
    )
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def _verdict(low: float, high: float) -> str:
    """The comparison's outcome: ahead or behind when the interval excludes 1, else a tie
    (within this machine's noise, neither runtime is shown faster)."""
    return "ahead" if low > 1.0 else "behind" if high < 1.0 else "tie"


def run_batch_speedup(rt, model_blob: bytes, settings: Settings) -> dict[str, Any]:
    import rkrt

    x = np.random.default_rng(4).standard_normal((BATCH_ROWS, 4)).astype(np.float32)
    one = rkrt.Pool(model_blob, cores=CORES[:1])
    three = rkrt.Pool(model_blob, cores=CORES)
    rt.set_run_delay(RUN_DELAY_US)
    t_one, t_three = [], []
    try:
        np.testing.assert_array_equal(one.run_batch(x)[0], three.run_batch(x)[0])
        for _ in range(max(3, settings.rounds // 2)):
            for pool, ts in ((one, t_one), (three, t_three)):
                t0 = time.perf_counter()
                pool.run_batch(x)
                ts.append(time.perf_counter() - t0)
    finally:
        rt.set_run_delay(0)
        one.close()
        three.close()
    return {
        "rows": BATCH_ROWS,
        "one_s": statistics.median(t_one),
        "three_s": statistics.median(t_three),
        "speedup": _median_ratio(t_one, t_three),
    }


# --- synchronous per-call overhead ----------------------------------------------------------


def overhead(library: str, model_path: Path, peer, settings: Settings) -> dict[str, Any]:
    from vendor_compare import RawFloor

    import rkrt
    import rkrt.ort

    x = np.random.default_rng(5).standard_normal((1, 4)).astype(np.float32)
    x16 = x.astype(np.float16)
    floor = RawFloor(model_path.read_bytes(), library)
    floor.bind_input(x)
    session = rkrt.Session(model_path)
    bound_session = rkrt.Session(model_path)
    bound = bound_session.bind()
    b_in, b_out = bound.inputs[0], bound.outputs[0]

    def bind_call() -> None:
        b_in[...] = x
        bound.run()
        b_out.copy()

    def io_binding_call(sess: Any) -> Callable[[], Any]:
        """onnxruntime's IO-binding loop, the same calls on rkrt.ort and on the peer."""
        io = sess.io_binding()
        io.bind_output("output")

        def call() -> None:
            io.bind_cpu_input("input", x16)  # the peer's binding takes the native type only
            sess.run_with_iobinding(io)
            io.copy_outputs_to_cpu()

        return call

    ort_sess = rkrt.ort.InferenceSession(model_path)
    calls: dict[str, Callable[[], Any]] = {
        "raw cffi floor": floor.call,
        "rkrt Session.run": lambda: session.run(x),
        "rkrt zero-copy (bind)": bind_call,
        "rkrt.ort run": lambda: ort_sess.run(None, {"input": x}),
        "rkrt.ort io_binding": io_binding_call(ort_sess),
    }
    closers = [floor.close, session.close, bound_session.close, ort_sess.close]
    if peer is not None:
        p_sess = peer.InferenceSession(str(model_path))
        calls["ez_rknn_async run"] = lambda: p_sess.run(None, {"input": x})
        calls["ez_rknn_async io_binding"] = io_binding_call(peer.InferenceSession(str(model_path)))
    for call in calls.values():
        time_calls(call, 300)  # warm-up
    blocks: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for b in range(settings.blocks):
        for name in names[b % len(names) :] + names[: b % len(names)]:
            blocks[name].append(statistics.median(time_calls(calls[name], settings.block_calls)))
    floor_blocks = blocks["raw cffi floor"]
    result = {}
    for name, medians in blocks.items():
        over = [m - f for m, f in zip(medians, floor_blocks)]
        result[name] = {"median_us": statistics.median(medians) / 1e3,
                        "over_floor_us": statistics.median(over) / 1e3}  # fmt: skip
    for close in closers:
        close()
    return result


# --- memory under a fast producer -----------------------------------------------------------


def memory(rt, pool, peer_sess, settings: Settings) -> dict[str, Any]:
    n = settings.rss_requests
    rng = np.random.default_rng(6)
    source = rng.standard_normal((64, 1, 4)).astype(np.float32)

    def produce():
        for i in range(n):
            yield source[i % 64].copy()  # a fresh array per request, as a real producer makes

    t0 = time.perf_counter()
    for _ in produce():
        pass
    producer_rate = n / (time.perf_counter() - t0)

    def watch(peak: list[int], i: int) -> None:
        if i % 1000 == 0:
            peak[0] = max(peak[0], rss_bytes())

    def by_submit(peak: list[int]) -> None:
        done = threading.Semaphore(0)
        for i, x in enumerate(produce()):
            pool.submit(x).add_done_callback(lambda f: done.release())
            watch(peak, i)
        for _ in range(n):
            done.acquire()

    def by_imap(peak: list[int]) -> None:
        for i, _ in enumerate(pool.imap(produce())):
            watch(peak, i)

    def by_asyncio(peak: list[int]) -> None:
        async def consume() -> None:
            i = 0
            async for _ in pool.imap_async(produce()):
                watch(peak, i)
                i += 1

        asyncio.run(consume())

    lines: dict[str, Callable[[list[int]], None]] = {
        "rkrt Pool.submit": by_submit,
        "rkrt Pool.imap": by_imap,
        "rkrt Pool.imap_async": by_asyncio,
    }
    if peer_sess is not None:

        def by_peer(peak: list[int]) -> None:
            done = threading.Semaphore(0)
            for i, x in enumerate(produce()):
                peer_sess.run_async(None, {"input": x}, lambda *a: done.release(), None)
                watch(peak, i)
            for _ in range(n):
                done.acquire()

        lines["ez_rknn_async run_async"] = by_peer
    rt.set_run_delay(settings.rss_delay_us)
    result: dict[str, Any] = {"requests": n, "producer_per_s": producer_rate}
    try:
        for name, line in lines.items():
            gc.collect()
            start = rss_bytes()
            peak = [start]
            t0 = time.perf_counter()
            line(peak)
            elapsed = time.perf_counter() - t0
            gc.collect()
            result[name] = {"peak_growth_bytes": peak[0] - start, "npu_per_s": n / elapsed,
                            "end_growth_bytes": rss_bytes() - start}  # fmt: skip
    finally:
        rt.set_run_delay(0)
    return result


# --- report -----------------------------------------------------------------------------------


def checks(result: dict[str, Any]) -> list[tuple[str, str, bool]]:
    tp = result["throughput"]
    best_name = tp["best_rkrt"]
    best = tp["lines"][best_name]
    out = [(
        "rkrt's best streaming API >= 95% of the ideal N*t/3",
        f"{best_name}: {best['of_ideal']:.1%}", best["of_ideal"] >= 0.95,
    )]  # fmt: skip
    for part, _ in PARTS[:2]:
        vs = result[part]["peer_vs_rkrt"]
        if vs is not None:
            low, high = vs["ci95"]
            out.append((
                f"rkrt's best beats ez_rknn_async's best at {result[part]['delay_us']} us per run "
                "(median over rounds of the same-round time ratio, its 95% interval above 1)",
                f"{vs['peer']} / {vs['rkrt']} = {vs['median']:.3f}x [{low:.3f}, {high:.3f}]: "
                f"{vs['verdict']}, rkrt ahead in {vs['rounds_won']} of {vs['rounds']} rounds",
                vs["verdict"] == "ahead",
            ))  # fmt: skip
    batch = result["run_batch"]
    out.append(("run_batch on 3000 rows >= 2.7x one context", f"{batch['speedup']:.2f}x",
                batch["speedup"] >= 2.7))  # fmt: skip
    mem = result["memory"]
    npu = max(v["npu_per_s"] for k, v in mem.items() if k.startswith("rkrt"))
    fast = mem["producer_per_s"] / npu
    out.append(("producer >= 10x faster than the NPU (memory test)", f"{fast:.0f}x", fast >= 10))
    for name in ("rkrt Pool.submit", "rkrt Pool.imap", "rkrt Pool.imap_async"):
        growth = mem[name]["peak_growth_bytes"]
        out.append((f"{name}: RSS flat over {mem['requests']:,} requests (< 4 MiB peak growth)",
                    f"{growth / 1024:+.0f} KiB", growth < 4 << 20))  # fmt: skip
    return out


def format_report(result: dict[str, Any]) -> str:
    rows = []
    for part, _ in PARTS:
        tp = result[part]
        rows += [f"throughput: {tp['requests']} requests, 3 contexts, {tp['delay_us']} us per run; "
                 f"t = {tp['t_per_call_us']:.0f} us per call on one context, "
                 f"ideal {tp['ideal_s'] * 1e3:.1f} ms",
                 f"  {'line':34} {'median ms':>9} {'us/request':>10} {'of ideal':>9} "
                 f"{'x 1 context':>11} {'run us':>7} {'gap us':>7} {'crowded':>7}"]  # fmt: skip
        for name, v in tp["lines"].items():
            per = v["median_s"] / tp["requests"] * 1e6
            rows.append(f"  {name:34} {v['median_s'] * 1e3:9.1f} {per:10.1f} {v['of_ideal']:9.1%} "
                        f"{v['x_single']:10.2f}x {v['run_us']:7.1f} "
                        f"{v['gap_us']:7.1f} {v['crowded']:7.0%}")  # fmt: skip
    b = result["run_batch"]
    rows.append(f"run_batch, {b['rows']} rows (batches 32/8/1): "
                f"1 context {b['one_s'] * 1e3:.1f} ms, 3 contexts {b['three_s'] * 1e3:.1f} ms, "
                f"{b['speedup']:.2f}x")  # fmt: skip
    rows.append("synchronous call, no delay:")
    rows.append(f"  {'line':34} {'median us':>9} {'us over floor':>13}")
    for name, v in result["overhead"].items():
        rows.append(f"  {name:34} {v['median_us']:9.1f} {v['over_floor_us']:+13.1f}")
    mem = result["memory"]
    rows.append(f"memory: {mem['requests']:,} requests, producer {mem['producer_per_s']:,.0f}/s:")
    for name, v in mem.items():
        if isinstance(v, dict):
            rows.append(f"  {name:34} NPU {v['npu_per_s']:8,.0f}/s  peak RSS "
                        f"{v['peak_growth_bytes'] / 1024:+7.0f} KiB")  # fmt: skip
    rows.append("targets:")
    for target, measured, ok in result["checks"]:
        rows.append(f"  {'PASS' if ok else 'FAIL'}  {target}: {measured}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few iterations per line")
    parser.add_argument("--no-peer", action="store_true", help="rkrt lines only")
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args(argv)
    settings = Settings.quick() if args.quick else Settings()

    from fake_rknnrt import FakeRuntime, build_library
    from rkrt_support import mlp

    library = str(build_library())
    os.environ["RKRT_LIBRARY"] = library
    os.environ["RKRT_SOC"] = os.environ["RKRT_FAKE_SOC"] = "rk3588"
    peer = None if args.no_peer else __import__("peer").ensure_peer(library)
    import rkrt

    rt = FakeRuntime(library)
    workdir = Path(tempfile.mkdtemp(prefix="rkrt-streaming-"))
    model_path = mlp(seed=7).save(workdir / "4-100-3.rknn", rknn_prefix=True)
    batch_blob = mlp(seed=7, batch_sizes=(1, 8, 32)).to_bytes()

    pool = rkrt.Pool(model_path, cores=CORES)
    session = rkrt.Session(model_path, core_mask="CORE_0")
    peer_sess = None
    if peer is not None:
        options = peer.make_provider_options(schedule=PEER_SCHEDULE, max_queue_size=2 * len(CORES))
        peer_sess = peer.InferenceSession(str(model_path), provider_options=[options])
    result: dict[str, Any] = {"settings": settings.__dict__, "peer": peer and peer.__version__}
    for part, delay_us in PARTS:
        result[part] = {"requests": settings.requests,
                        **throughput(rt, pool, session, peer_sess, settings, delay_us)}  # fmt: skip
    result["run_batch"] = run_batch_speedup(rt, batch_blob, settings)
    result["memory"] = memory(rt, pool, peer_sess, settings)
    pool.close()
    session.close()
    del peer_sess
    gc.collect()
    result["overhead"] = overhead(library, model_path, peer, settings)
    result["checks"] = [list(c) for c in checks(result)]
    print(format_report(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
