"""The shared frame buffer both processes agree on: a header, then one frame of pixels.

Layout of the memfd (standing in for a camera's DMA-BUF):

    offset 0   int64 sequence number, int64 CLOCK_MONOTONIC time (ns) the frame was written
    offset 64  the frame: uint8 pixels, as many as the model's first input has elements

Handshake over two pipes, one byte per frame: the camera writes a frame and sends "ready";
the service runs the model and sends "done", which frees the buffer for the next frame.
"""

from __future__ import annotations

import mmap

import numpy as np

FRAME_OFFSET = 64
HEADER = np.dtype([("seq", "<i8"), ("written_ns", "<i8")])
BANK = 16  # distinct frames the camera cycles through


def buffer_size(frame_bytes: int) -> int:
    return FRAME_OFFSET + frame_bytes


def header_view(mapping: mmap.mmap) -> np.ndarray:
    """The header as a one-element structured array over the shared memory."""
    return np.frombuffer(mapping, HEADER, count=1)


def frame_bank(n_pixels: int) -> np.ndarray:
    """BANK deterministic frames: a moving gradient plus noise, like a (tiny) camera."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, n_pixels)
    frames = [(ramp * ((k % 4) + 1) / 4 + rng.integers(0, 55, n_pixels)) for k in range(BANK)]
    return np.asarray(frames).astype(np.uint8)
