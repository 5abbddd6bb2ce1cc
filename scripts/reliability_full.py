"""Full-size reliability runs (the suite runs bounded versions) and the README table.

    .venv/bin/python scripts/reliability_full.py [--quick] [--fuzz-seconds 300]

Fault sweep over every scenario, 8 threads x 10^4 Pool runs with random delays, 10^6 run calls
and 10^4 open/close cycles with RSS measured after warm-up, and atheris over the metadata
parser. Uses the same workloads as tests/test_rkrt/test_reliability_*.py against the test double.
Exits non-zero if any check fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "test_rkrt"))  # the workloads: test_reliability_*.py

from fake_rknnrt import FakeRuntime  # noqa: E402
from rkrt_support import NO_LEAKS, library  # noqa: E402


def fault_sweep(runtime: FakeRuntime) -> tuple[str, str]:
    import test_reliability_faults as faults

    injected = 0
    for scenario_name, scenario in faults.SCENARIOS.items():
        for model_name, model in faults.MODELS.items():
            if (scenario_name, model_name) not in faults.REFUSED:
                injected += faults.sweep(runtime, scenario(model)).injected
    return f"{injected} faults injected (open, run, bind, bound run, dup, pool start)", (
        f"codes {faults.CODES[0]}..{faults.CODES[12]} and {faults.UNKNOWN_CODE}; "
        "RKNNError every time, nothing live, no misuse"
    )


def threads(runtime: FakeRuntime, runs: int) -> tuple[str, str]:
    import test_reliability_threads as t

    r = t.hammer_pool(runtime, t.MODEL, threads=8, runs_per_thread=runs, delay_us=2,
                      jitter_us=40)  # fmt: skip
    ok = not r["wrong"] and r["unsafe"] == 0 and r["live"] == NO_LEAKS
    if not ok:
        raise SystemExit(f"threads: {r}")
    return (f"8 threads x {runs} Pool.run ({r['runs']} calls, {r['contexts']} contexts)",
            f"all equal to single-threaded, concurrent=0, max {r['max_parallel_runs']} in "
            f"flight, {r['seconds']:.1f} s")  # fmt: skip


def memory(runtime: FakeRuntime, runs: int, cycles: int) -> list[tuple[str, str]]:
    import test_reliability_memory as m

    rows = []
    for what, work, warm, count in (("run calls", m.run_calls, runs // 10, runs),
                                    ("open/close cycles", m.open_close_cycles, cycles // 10,
                                     cycles)):  # fmt: skip
        start = time.perf_counter()
        grew = m.growth(work, warm, count)
        if runtime.live() != NO_LEAKS or runtime.counter("unsafe"):
            raise SystemExit(f"{what}: left {runtime.live()}, {runtime.counters()}")
        rows.append((f"{count} {what}",
                     f"RSS {grew / 1024:+.0f} KiB after warm-up, 0 live objects, "
                     f"{time.perf_counter() - start:.0f} s"))  # fmt: skip
    return rows


def fuzz(seconds: int, random_seed: bool) -> tuple[str, str]:
    sys.path.insert(0, str(REPO / "scripts"))
    import fuzz_metadata

    # The full run explores from a new seed each time; --quick, a smoke test, replays a prefix
    # of what the suite's atheris gate runs (seed 1), so it cannot fail by chance.
    flags = [f"-max_total_time={seconds}"] + ([] if random_seed else ["-seed=1"])
    with tempfile.TemporaryDirectory() as tmp:
        try:
            runs = fuzz_metadata.fuzz(Path(tmp), *flags)
        except fuzz_metadata.FuzzCrash as crash:
            raise SystemExit(f"fuzzer found a crash: {crash}") from None
        return f"atheris, {seconds} s on the metadata parser", f"{runs} executions, no crash"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="1/100 of the sizes, fuzzing from a fixed seed"
    )
    parser.add_argument("--fuzz-seconds", type=int, default=300)
    args = parser.parse_args()
    scale = 100 if args.quick else 1
    so = library()
    os.environ["RKRT_LIBRARY"] = str(so)
    os.environ.pop("RKRT_SOC", None)
    runtime = FakeRuntime(so)
    runtime.reset()
    rows = [fault_sweep(runtime), threads(runtime, 10_000 // scale)]
    rows += memory(runtime, 1_000_000 // scale, 10_000 // scale)
    rows.append(fuzz(max(5, args.fuzz_seconds // scale), random_seed=not args.quick))
    print("| tried | survived |\n|---|---|")
    for tried, survived in rows:
        print(f"| {tried} | {survived} |")


if __name__ == "__main__":
    main()
