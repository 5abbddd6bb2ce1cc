"""`make bench`: rkrt against the raw floor natively, and against RKNNLite on emulated aarch64.

Both lanes run bench/vendor_compare.py (same models, same method) in a process of their own:
  native    this machine's Python, the test double built with gcc; lines floor, run, bind
  aarch64   an arm64 CPython under qemu-user (bench/aarch64_lane.py builds and caches it);
            lines floor, run, bind and the vendor's RKNNLite, on the cross-built test double
Prints one table and the target checks, and writes bench/results/bench.json (with every
sample) and bench/results/latency.png. Absolute times under emulation mean little: compare
the ratios, each measured within one run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO / "tests"))

import aarch64_lane  # noqa: E402
from report import format_checks, format_table, target_checks  # noqa: E402

NATIVE_LINES = "floor,run,bind"


def machine() -> dict[str, Any]:
    """The host this run measured on."""
    cpu = "unknown"
    try:
        for row in Path("/proc/cpuinfo").read_text().splitlines():
            if row.startswith("model name"):
                cpu = row.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    qemu = None
    try:
        out = subprocess.run(
            ["qemu-aarch64-static", "--version"], capture_output=True, text=True, check=False
        ).stdout
        qemu = out.splitlines()[0] if out else None
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "system": platform.platform(),
        "host_python": platform.python_version(),
        "qemu": qemu,
    }


def _vendor_args(quick: bool, json_path: Path, extra: list[str]) -> list[str]:
    args = [str(BENCH / "vendor_compare.py"), "--json", str(json_path), *extra]
    return [*args, "--quick"] if quick else args


def _load(json_path: Path, proc: subprocess.CompletedProcess, lane: str) -> dict[str, Any]:
    if proc.returncode != 0:
        raise SystemExit(f"the {lane} lane failed (exit {proc.returncode}); its output is above")
    return json.loads(json_path.read_text())


def native_lane(quick: bool, results: Path) -> dict[str, Any]:
    """vendor_compare.py with this interpreter on the natively built test double."""
    from fake_rknnrt import build_library

    library = str(build_library())
    json_path = results / "native.json"
    args = _vendor_args(quick, json_path, ["--lines", NATIVE_LINES, "--library", library])
    env = {**os.environ, "RKRT_LIBRARY": library}
    proc = subprocess.run([sys.executable, *args], env=env, stdout=subprocess.DEVNULL)
    return _load(json_path, proc, "native")


def emulated_lane(
    quick: bool, results: Path, lane: aarch64_lane.Lane | None = None
) -> dict[str, Any]:
    """vendor_compare.py as aarch64 under qemu, RKNNLite included."""
    lane = lane or aarch64_lane.ensure_lane()
    json_path = results / "aarch64.json"
    proc = lane.run(_vendor_args(quick, json_path, []), stdout=subprocess.DEVNULL)
    return _load(json_path, proc, "aarch64 (qemu)")


def streaming_lane(quick: bool, results: Path, peer: bool) -> str:
    """bench/streaming.py in a process of its own (its RSS probe wants a fresh one): Pool
    throughput, run_batch, memory under load, and ztu_somemodelruntime_ez_rknn_async."""
    json_path = results / "streaming.json"
    args = [str(BENCH / "streaming.py"), "--json", str(json_path)]
    args += ["--quick"] if quick else []
    args += [] if peer else ["--no-peer"]
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"the streaming benchmark failed (exit {proc.returncode})")
    return proc.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few iterations per line")
    parser.add_argument("--native-only", action="store_true", help="skip the emulated lane")
    parser.add_argument("--results", type=Path, default=RESULTS, help="output directory")
    parser.add_argument(
        "--no-peer", action="store_true",
        help="leave ztu_somemodelruntime_ez_rknn_async out (no download)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.results.mkdir(parents=True, exist_ok=True)

    started = datetime.datetime.now(datetime.timezone.utc)
    lanes = [(f"{platform.machine()} native", native_lane(args.quick, args.results))]
    if not args.native_only:
        lanes.append(("aarch64 qemu", emulated_lane(args.quick, args.results)))

    streaming = streaming_lane(args.quick, args.results, not args.no_peer)
    checks = target_checks(lanes)
    host = machine()
    date = started.strftime("%Y-%m-%d %H:%M UTC")
    print(f"rkrt benchmark, {date}, {host['cpu']} ({host['cores']} cores), {host['system']}")
    if not args.native_only:
        print(f"emulated lane: {host['qemu']}; RKNNLite and rkrt load the same test double")
    print()
    print(format_table(lanes))
    print()
    print(format_checks(checks))
    print()
    print(streaming, end="")

    summary = {
        "date": started.isoformat(timespec="seconds"),
        "machine": host,
        "quick": args.quick,
        "lanes": dict(lanes),
        "checks": [{"target": t, "measured": m, "verdict": v} for t, m, v in checks],
    }
    (args.results / "bench.json").write_text(json.dumps(summary, indent=1))
    from chart import latency_chart

    latency_chart(lanes, args.results / "latency.png", f"rkrt benchmark, {date}")
    print(
        f"\nwrote {args.results / 'bench.json'}, {args.results / 'streaming.json'} and "
        f"{args.results / 'latency.png'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
