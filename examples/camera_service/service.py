"""Camera inference service: the NPU reads each frame where the camera wrote it.

A producer process (camera.py, the load generator) writes uint8 frames into a memfd-backed
shared buffer, standing in for the DMA-BUF a V4L2/RGA/MPP pipeline hands around. The service
binds that fd ONCE to the model's input (``rkrt.external.from_fd``) and then, per frame,
only runs the model: no buffer is allocated, copied or re-bound per frame. For comparison the
same frames are then served through ``Session.run()`` on a numpy view of the same memory.
The report gives per-frame latency of both (service time: frame ready -> result ready; and
end to end: frame written -> result ready) and their ratio, measured in one run.

    python examples/camera_service/service.py --frames 2000            # emulated, see below
    python examples/camera_service/service.py --model net.rknn         # on a board
    python examples/camera_service/service.py --frames 500 --json      # machine-readable

Without ``--model`` and with RKRT_LIBRARY unset, it runs on the project's test-double
librknnrt (tests/fake_rknnrt, built with the C compiler) and a small fake model: the report
is then labelled EMULATED and measures rkrt's own per-frame cost, not an NPU.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import frames
import numpy as np

import rkrt
from rkrt import external

HERE = Path(__file__).resolve().parent
CAMERA = HERE / "camera.py"
EMULATED_LABEL = "EMULATED: test-double librknnrt (tests/fake_rknnrt), no NPU"
EMULATED_PIXELS = 16 * 16


@dataclass
class Runtime:
    """What the service runs on: a model, the library to load, and how it was chosen."""

    model: Any  # a path or the model's bytes
    library: Optional[str]
    label: str
    fake: Any = None  # the test double's control API when emulated (for its leak counters)


def emulated_runtime() -> Runtime:
    sys.path.insert(0, str(HERE.parents[1] / "tests"))
    from fake_rknnrt import Dense, FakeModel, FakeRuntime, build_library

    rng = np.random.default_rng(0)
    # Pixel normalisation (x / 255) is folded into the first layer, as converters do.
    w1 = rng.normal(0, 1 / 16, (EMULATED_PIXELS, 64)).astype(np.float32) / 255
    w2 = rng.normal(0, 1 / 8, (64, 10)).astype(np.float32)
    layers = [Dense(w1, np.zeros(64, np.float32), "relu"),
              Dense(w2, np.zeros(10, np.float32), "softmax")]  # fmt: skip
    path = str(build_library())
    fake = FakeRuntime(path)
    fake.reset()
    fake.allow_non_dmabuf()  # the memfd camera below is no DMA-BUF
    return Runtime(FakeModel(layers, dtype="float16").to_bytes(), path, EMULATED_LABEL, fake)


def choose_runtime(model: Optional[str]) -> Runtime:
    if model is not None:
        return Runtime(model, None, f"librknnrt ({os.environ.get('RKRT_LIBRARY', 'system')})")
    if os.environ.get("RKRT_LIBRARY"):
        raise SystemExit(
            "RKRT_LIBRARY is set, so this is meant for a real runtime: pass --model net.rknn, "
            "or unset RKRT_LIBRARY for the emulated demo"
        )
    return emulated_runtime()


class Camera:
    """The producer process and the two pipes of the frame handshake."""

    def __init__(self, memfd: int, n_frames: int, pixels: int, fps: float) -> None:
        ready_r, ready_w = os.pipe()
        done_r, done_w = os.pipe()
        cmd = [sys.executable, str(CAMERA), "--fd", str(memfd), "--ready", str(ready_w),
               "--done", str(done_r), "--frames", str(n_frames), "--pixels", str(pixels),
               "--fps", str(fps)]  # fmt: skip
        self.proc = subprocess.Popen(cmd, pass_fds=(memfd, ready_w, done_r))
        os.close(ready_w)
        os.close(done_r)
        self.ready, self.done = ready_r, done_w

    def close(self) -> None:
        os.close(self.done)
        os.close(self.ready)
        if self.proc.wait(timeout=60) != 0:
            raise RuntimeError(f"the camera process failed with exit code {self.proc.returncode}")


def serve(step: Callable[[], np.ndarray], camera: Camera, header: np.ndarray, results: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray, int]:  # fmt: skip
    """Run ``step`` once per frame; (service ns, end-to-end ns, RSS growth in bytes)."""
    n = len(results)
    # Written once here so their pages are resident before the loop: RSS then shows only
    # what the frame loop itself allocates.
    service = np.full(n, -1, np.int64)
    end_to_end = np.full(n, -1, np.int64)
    results.fill(np.nan)
    token = bytearray(1)
    rss_start = 0
    for k in range(n):
        if os.readv(camera.ready, [token]) == 0:
            raise RuntimeError(f"the camera stopped after {k} frames")
        t0 = time.monotonic_ns()
        y = step()
        t1 = time.monotonic_ns()
        results[k] = y[0]
        written, seq = int(header["written_ns"][0]), int(header["seq"][0])
        os.write(camera.done, b"\1")
        if seq != k:
            raise RuntimeError(f"frame {k} expected, the buffer holds frame {seq}")
        service[k], end_to_end[k] = t1 - t0, t1 - written
        if k == n // 10:
            rss_start = rss_bytes()
    return service, end_to_end, rss_bytes() - rss_start


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def phase(mode: str, rt: Runtime, memfd: int, n_frames: int, fps: float) -> dict[str, Any]:
    """Serve n_frames in ``mode`` ("bound": the fd bound once; "run": Session.run())."""
    size = os.fstat(memfd).st_size
    # The session goes first: run() keeps its last input (a view of `shared`) until closed.
    with mmap.mmap(memfd, size) as shared, rkrt.Session(rt.model, library=rt.library) as s:
        spec = s.inputs[0]
        pixels = spec.n_elems
        results = np.empty((n_frames, *s.outputs[0].shape[1:]), np.float32)
        header = frames.header_view(shared)
        camera = Camera(memfd, n_frames, pixels, fps)
        try:
            if mode == "bound":
                # A memfd is no DMA-BUF: only the emulated runtime (which maps any fd) takes
                # it; a board's camera, RGA or MPP hands out real DMA-BUFs.
                frame = external.from_fd(memfd, pixels, offset=frames.FRAME_OFFSET,
                                         dtype=np.uint8, require_dmabuf=False)  # fmt: skip
                with s.bind(inputs={0: frame}) as b:
                    run, y = b.run, b.outputs[0]

                    def step() -> np.ndarray:
                        run()
                        return y

                    timings = serve(step, camera, header, results)
            else:
                x = np.frombuffer(shared, np.uint8, pixels, frames.FRAME_OFFSET)
                x = x.reshape(spec.shape)
                timings = serve(lambda: s.run(x)[0], camera, header, results)
                del x
        finally:
            camera.close()
        del header
    service, end_to_end, rss_growth = timings
    return {"service_ns": service, "end_to_end_ns": end_to_end, "rss_growth": rss_growth,
            "results": results, "input": spec}  # fmt: skip


def stats(ns: np.ndarray, warmup: int) -> dict[str, float]:
    us = ns[warmup:] / 1e3
    return {"p50": float(np.percentile(us, 50)), "p99": float(np.percentile(us, 99)),
            "mean": float(us.mean())}  # fmt: skip


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=2000, help="frames per mode (default 2000)")
    p.add_argument(
        "--fps",
        type=float,
        default=0.0,
        help="camera frame rate; 0 (default): next frame as soon as one is done",
    )
    p.add_argument("--model", help="a .rknn model whose first input takes the frame (board)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    args = p.parse_args(argv)
    if args.frames < 20:
        p.error("--frames must be at least 20 (the first 10%% are warm-up)")
    rt = choose_runtime(args.model)
    warmup = args.frames // 10
    memfd = os.memfd_create("camera-frame")
    try:
        with rkrt.Session(rt.model, library=rt.library) as s:
            if len(s.inputs) != 1:
                raise SystemExit(f"the model has {len(s.inputs)} inputs; this service feeds one")
            os.ftruncate(memfd, frames.buffer_size(s.inputs[0].n_elems))
        bound = phase("bound", rt, memfd, args.frames, args.fps)
        run = phase("run", rt, memfd, args.frames, args.fps)
        os.fstat(memfd)  # rkrt never closes the caller's fd: this raises if it did
        fd_open = True
    finally:
        os.close(memfd)
    spec = bound["input"]
    report: dict[str, Any] = {
        "runtime": rt.label,
        "emulated": rt.fake is not None,
        "frames": args.frames,
        "warmup_frames": warmup,
        "fps": args.fps,
        "input": {"name": spec.name, "shape": list(spec.shape), "dtype": "uint8"},
        "fd_open_after_close": fd_open,
        "results_identical": bool(np.array_equal(bound["results"], run["results"])),
    }
    for name, r in (("bound", bound), ("run", run)):
        report[name] = {
            "service_us": stats(r["service_ns"], warmup),
            "end_to_end_us": stats(r["end_to_end_ns"], warmup),
            "rss_growth_kib": r["rss_growth"] / 1024,
        }
    for key in ("p50", "mean"):
        report[f"ratio_service_{key}"] = (
            report["bound"]["service_us"][key] / report["run"]["service_us"][key]
        )
    report["ratio_end_to_end_p50"] = (
        report["bound"]["end_to_end_us"]["p50"] / report["run"]["end_to_end_us"]["p50"]
    )
    if rt.fake is not None:
        report["live_after"] = rt.fake.live()
        counted = ("rknn_create_mem_from_fd", "rknn_set_io_mem", "rknn_run", "rknn_inputs_set")
        report["calls"] = {f: rt.fake.calls(f) for f in counted}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return report


def print_report(r: dict[str, Any]) -> None:
    print(f"runtime: {r['runtime']}")
    print(f"input {r['input']['name']!r} {r['input']['shape']} uint8 from a memfd at offset "
          f"{frames.FRAME_OFFSET}; {r['frames']} frames per mode ({r['warmup_frames']} warm-up "
          f"frames left out), camera fps {r['fps'] or 'unpaced'}")  # fmt: skip
    print(f"{'per-frame latency (us)':<44}{'p50':>9}{'p99':>9}{'mean':>9}")
    for mode, title in (("bound", "fd bound once (zero-copy)"), ("run", "Session.run() per frame")):
        for key, what in (("service_us", "service"), ("end_to_end_us", "end to end")):
            st = r[mode][key]
            row = f"{st['p50']:>9.1f}{st['p99']:>9.1f}{st['mean']:>9.1f}"
            print(f"  {title + ', ' + what:<42}{row}")
    print(
        f"ratio bound / run, service time: p50 {r['ratio_service_p50']:.2f}, "
        f"mean {r['ratio_service_mean']:.2f}; end to end p50 {r['ratio_end_to_end_p50']:.2f}"
    )
    print(
        f"RSS growth over the bound run: {r['bound']['rss_growth_kib']:.0f} KiB; results "
        f"identical in both modes: {r['results_identical']}; caller's fd still open: "
        f"{r['fd_open_after_close']}"
    )
    if "live_after" in r:
        print(f"test double after close: live {r['live_after']}, calls {r['calls']}")


if __name__ == "__main__":
    main()
