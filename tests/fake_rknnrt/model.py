"""The fake model format: dense layers the test-double runtime computes, and their numpy twin."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

MAGIC = b"RKFAKE\x00\x01"
VERSION = 1
VERSION_LAYOUTS = 2  # every input carries a layout (see ImageLayout)
ACTIVATIONS = ("identity", "relu", "sigmoid", "tanh", "softmax")
# The model's native type, as rknn_tensor_type values.
DTYPES = {"float32": 0, "float16": 1, "int8": 2}
# rknn_tensor_format values.
FORMATS = {"NCHW": 0, "NHWC": 1, "NC1HWC2": 2}
MAX_NAME_BYTES = 255
MAX_CUSTOM_BYTES = 1023


@dataclass(frozen=True)
class Dense:
    """y = activation(x @ weight + bias); weight has shape (in_features, out_features)."""

    weight: np.ndarray
    bias: np.ndarray
    activation: str = "identity"

    def __post_init__(self) -> None:
        w = np.ascontiguousarray(self.weight, dtype=np.float32)
        b = np.ascontiguousarray(self.bias, dtype=np.float32)
        if w.ndim != 2 or 0 in w.shape:
            raise ValueError(f"Dense weight must be a non-empty 2-D (in, out) array, got {w.shape}")
        if b.shape != (w.shape[1],):
            raise ValueError(f"Dense bias must have shape ({w.shape[1]},), got {b.shape}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not one of {ACTIVATIONS}")
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", b)


@dataclass(frozen=True)
class ImageLayout:
    """A 4-D input of c * h * w features, as an image model's input looks to the runtime.

    ``fmt`` (NCHW or NHWC) is how INPUT_ATTR describes it and the order the model flattens
    it in; ``native_fmt`` (NCHW, NHWC or NC1HWC2 with channel blocks of ``c2``) and
    ``w_stride`` (row pitch in pixels, >= w; ignored for NCHW) are how NATIVE_INPUT_ATTR
    lays it out for zero-copy.
    """

    c: int
    h: int
    w: int
    fmt: str = "NCHW"
    native_fmt: str = "NHWC"
    w_stride: int = 0
    c2: int = 0

    def __post_init__(self) -> None:
        if min(self.c, self.h, self.w) < 1:
            raise ValueError(f"c, h, w must be >= 1, got {self.c, self.h, self.w}")
        if self.fmt not in ("NCHW", "NHWC") or self.native_fmt not in FORMATS:
            raise ValueError(f"formats {self.fmt}/{self.native_fmt}: see FORMATS")
        if self.w_stride and self.w_stride < self.w:
            raise ValueError(f"w_stride {self.w_stride} < w {self.w}")
        if (self.native_fmt == "NC1HWC2") != (self.c2 > 0):
            raise ValueError("c2 > 0 exactly when native_fmt is NC1HWC2")

    def shape(self, batch: int) -> tuple[int, int, int, int]:
        """The plain (logical) shape of a batch."""
        if self.fmt == "NHWC":
            return (batch, self.h, self.w, self.c)
        return (batch, self.c, self.h, self.w)

    def to_bytes(self) -> bytes:
        return struct.pack(
            "<8I",
            4,
            self.c,
            self.h,
            self.w,
            FORMATS[self.fmt],
            FORMATS[self.native_fmt],
            self.w_stride or self.w,
            self.c2,
        )


def _check_tensors(kind: str, tensors: Sequence[tuple[str, int]], total: int) -> list:
    out = [(str(name), int(width)) for name, width in tensors]
    if not out:
        raise ValueError(f"a model needs at least one {kind}")
    for name, width in out:
        raw = name.encode()
        if not raw or len(raw) > MAX_NAME_BYTES or b"\0" in raw:
            raise ValueError(f"{kind} name {name!r} must be 1..{MAX_NAME_BYTES} bytes, no NUL")
        if width < 1:
            raise ValueError(f"{kind} {name!r} width must be >= 1, got {width}")
    widths = sum(w for _, w in out)
    if widths != total:
        raise ValueError(f"{kind} widths {[w for _, w in out]} sum to {widths}, expected {total}")
    return out


def _default_output_quant(activation: str) -> tuple[float, int]:
    # Cover the activation's range: [0, 1] for probabilities, [-1, 1] for tanh, else [-8, 8).
    if activation in ("sigmoid", "softmax"):
        return (1 / 255, -128)
    if activation == "tanh":
        return (1 / 127, 0)
    return (1 / 16, 0)


class FakeModel:
    """A model of dense layers in the fake runtime's own binary format (see README.md)."""

    def __init__(
        self,
        layers: Sequence[Dense],
        dtype: str = "float16",
        inputs: Sequence[tuple[str, int]] | None = None,
        outputs: Sequence[tuple[str, int]] | None = None,
        batch_sizes: Sequence[int] = (1,),
        custom_string: str = "",
        input_quant: Sequence[tuple[float, int]] | None = None,
        output_quant: Sequence[tuple[float, int]] | None = None,
        input_layouts: Sequence[ImageLayout | None] | None = None,
    ) -> None:
        self.layers = list(layers)
        if not self.layers:
            raise ValueError("a model needs at least one Dense layer")
        for i, (a, b) in enumerate(zip(self.layers, self.layers[1:])):
            if a.weight.shape[1] != b.weight.shape[0]:
                raise ValueError(
                    f"layer {i} gives {a.weight.shape[1]} features, layer {i + 1} takes "
                    f"{b.weight.shape[0]}"
                )
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r} is not one of {tuple(DTYPES)}")
        self.dtype = dtype
        n_in, n_out = self.layers[0].weight.shape[0], self.layers[-1].weight.shape[1]
        self.inputs = _check_tensors("input", inputs or [("input", n_in)], n_in)
        self.outputs = _check_tensors("output", outputs or [("output", n_out)], n_out)
        names = [n for n, _ in self.inputs + self.outputs]
        if len(set(names)) != len(names):
            raise ValueError(f"tensor names must be distinct, got {names}")
        self.batch_sizes = tuple(int(b) for b in batch_sizes)
        if (
            not self.batch_sizes
            or min(self.batch_sizes) < 1
            or len(set(self.batch_sizes)) != len(self.batch_sizes)
        ):
            raise ValueError(f"batch_sizes must be distinct positive ints, got {batch_sizes}")
        self.input_layouts = list(input_layouts or [None] * len(self.inputs))
        if len(self.input_layouts) != len(self.inputs):
            raise ValueError("input_layouts needs one entry (or None) per input")
        for (name, width), layout in zip(self.inputs, self.input_layouts):
            if layout is not None and layout.c * layout.h * layout.w != width:
                raise ValueError(f"input {name!r}: layout {layout} does not hold {width} values")
        if any(self.input_layouts) and len(self.batch_sizes) > 1:
            raise ValueError("4-D inputs are emulated for one fixed batch size only")
        self.custom_string = custom_string
        if len(custom_string.encode()) > MAX_CUSTOM_BYTES or "\0" in custom_string:
            raise ValueError(f"custom_string must be at most {MAX_CUSTOM_BYTES} bytes, no NUL")
        if dtype != "int8" and (input_quant or output_quant):
            raise ValueError("input_quant/output_quant apply to int8 models only")
        last = self.layers[-1].activation
        self.input_quant = self._quant("input", input_quant, [(1 / 16, 0)] * len(self.inputs))
        self.output_quant = self._quant(
            "output", output_quant, [_default_output_quant(last)] * len(self.outputs)
        )

    def _quant(self, kind: str, given, default) -> list[tuple[float, int]]:
        quant = [(float(s), int(z)) for s, z in (given or default)]
        if len(quant) != len(default):
            raise ValueError(f"{kind}_quant needs {len(default)} (scale, zero_point) pairs")
        for s, z in quant:
            if not (np.isfinite(s) and s > 0 and -128 <= z <= 127):
                raise ValueError(
                    f"{kind} quantization ({s}, {z}): need scale > 0 and -128 <= zp <= 127"
                )
        if self.dtype != "int8":
            return [(1.0, 0)] * len(default)
        return [(float(np.float32(s)), z) for s, z in quant]

    @property
    def batch(self) -> int:
        """The first allowed batch: the shape the runtime starts with."""
        return self.batch_sizes[0]

    def to_bytes(self) -> bytes:
        """Serialise in the fake runtime's format (little-endian, see README.md)."""
        version = VERSION_LAYOUTS if any(self.input_layouts) else VERSION
        parts = [
            MAGIC,
            struct.pack(
                "<6I",
                version,
                DTYPES[self.dtype],
                len(self.inputs),
                len(self.outputs),
                len(self.layers),
                len(self.batch_sizes),
            ),
        ]
        parts.append(struct.pack(f"<{len(self.batch_sizes)}I", *self.batch_sizes))
        for tensors, quant in ((self.inputs, self.input_quant), (self.outputs, self.output_quant)):
            for k, ((name, width), (scale, zp)) in enumerate(zip(tensors, quant)):
                raw = name.encode()
                parts.append(struct.pack("<I", len(raw)) + raw)
                parts.append(struct.pack("<Ifi", width, scale, zp))
                if version == VERSION_LAYOUTS and tensors is self.inputs:
                    layout = self.input_layouts[k]
                    parts.append(layout.to_bytes() if layout else struct.pack("<I", 2))
        for layer in self.layers:
            n_in, n_out = layer.weight.shape
            parts.append(struct.pack("<3I", n_in, n_out, ACTIVATIONS.index(layer.activation)))
            parts.append(layer.weight.astype("<f4").tobytes())
            parts.append(layer.bias.astype("<f4").tobytes())
        custom = self.custom_string.encode()
        parts.append(struct.pack("<I", len(custom)) + custom)
        return b"".join(parts)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_bytes(self.to_bytes())
        return path

    def _native(self, x: np.ndarray, scale: float, zp: int) -> np.ndarray:
        """Round-trip float32 values through the native type, as the runtime stores them."""
        if self.dtype == "float16":
            return x.astype(np.float16).astype(np.float32)
        if self.dtype == "int8":
            s = np.float32(scale)
            v = x / s
            v = np.where(np.isnan(v), np.float32(0), v)
            q = np.clip(np.round(v) + np.float32(zp), -128, 127)
            return (q - np.float32(zp)) * s
        return x

    def reference(self, *xs: np.ndarray) -> list[np.ndarray]:
        """What the fake returns with want_float=1 for these inputs, each (batch, width).

        Inputs are taken as float32 values (float16, uint8 and int8 inputs convert exactly);
        a 4-D input in its plain shape (ImageLayout.shape) is flattened in that order.
        """
        xs = tuple(np.asarray(x).reshape(len(x), -1) if np.ndim(x) == 4 else x for x in xs)
        # Overflow to +-inf in float16 is what the runtime does too, not a problem to report.
        with np.errstate(over="ignore"):
            return self._forward(xs)

    def _forward(self, xs: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(xs) != len(self.inputs):
            raise ValueError(f"expected {len(self.inputs)} inputs, got {len(xs)}")
        cols = []
        for x, (name, width), (scale, zp) in zip(xs, self.inputs, self.input_quant):
            x = np.asarray(x, dtype=np.float32)
            if x.ndim != 2 or x.shape[1] != width or x.shape[0] != xs[0].shape[0]:
                raise ValueError(f"input {name!r}: expected (batch, {width}), got {x.shape}")
            cols.append(self._native(x, scale, zp))
        h = np.concatenate(cols, axis=1)
        for layer in self.layers:
            w = layer.weight
            if self.dtype == "float16":
                w = w.astype(np.float16).astype(np.float32)
            y = h.astype(np.float64) @ w.astype(np.float64) + layer.bias.astype(np.float64)
            h = _activate(layer.activation, y).astype(np.float32)
            if self.dtype == "float16":
                h = h.astype(np.float16).astype(np.float32)
        outs, start = [], 0
        for (_, width), (scale, zp) in zip(self.outputs, self.output_quant):
            outs.append(self._native(h[:, start : start + width], scale, zp))
            start += width
        return outs


def _activate(name: str, y: np.ndarray) -> np.ndarray:
    if name == "relu":
        return np.maximum(y, 0.0)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-y))
    if name == "tanh":
        return np.tanh(y)
    if name == "softmax":
        e = np.exp(y - y.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return y
