"""The load generator: a fake camera writing frames into the shared memfd.

Run by service.py as a separate process (the fds are inherited):

    python camera.py --fd 5 --ready 7 --done 8 --frames 1000 --pixels 256 [--fps 30]

For each frame it waits until the buffer is free, writes the pixels and the header
(sequence number, write time), and signals "ready". ``--fps 0`` sends the next frame as soon
as the previous one is done (the service's full speed); a rate paces frames like a sensor.
"""

from __future__ import annotations

import argparse
import mmap
import os
import time

import frames


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fd", type=int, required=True, help="the shared frame memfd")
    p.add_argument("--ready", type=int, required=True, help="pipe to signal a written frame")
    p.add_argument("--done", type=int, required=True, help="pipe the service frees frames on")
    p.add_argument("--frames", type=int, required=True)
    p.add_argument("--pixels", type=int, required=True)
    p.add_argument("--fps", type=float, default=0.0, help="frame rate; 0: as fast as consumed")
    args = p.parse_args()

    bank = frames.frame_bank(args.pixels)
    period_ns = int(1e9 / args.fps) if args.fps > 0 else 0
    token = bytearray(1)
    with mmap.mmap(args.fd, frames.buffer_size(args.pixels)) as shared:
        header = frames.header_view(shared)
        pixels = memoryview(shared)[frames.FRAME_OFFSET : frames.FRAME_OFFSET + args.pixels]
        next_ns = time.monotonic_ns()
        for seq in range(args.frames):
            if seq and os.readv(args.done, [token]) == 0:
                break  # the service went away
            if period_ns:
                next_ns += period_ns
                delay = next_ns - time.monotonic_ns()
                if delay > 0:
                    time.sleep(delay / 1e9)
            pixels[:] = bank[seq % frames.BANK].data
            header["seq"] = seq
            header["written_ns"] = time.monotonic_ns()
            os.write(args.ready, b"\1")
        os.readv(args.done, [token])  # the last frame's done: then the buffer can go
        del header
        pixels.release()
    os.close(args.ready)


if __name__ == "__main__":
    main()
