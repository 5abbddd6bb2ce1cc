"""NPU core masks and the SoC rules that decide which ones a board can honour."""

from __future__ import annotations

import enum
import os
import re
from pathlib import Path
from typing import Optional, Union

SOC_ENV_VAR = "RKRT_SOC"
DEVICE_TREE = Path("/proc/device-tree/compatible")


class CoreMask(enum.IntFlag):
    """Mirror of the C ``rknn_core_mask`` enum: which NPU cores a context may use."""

    AUTO = 0
    CORE_0 = 1
    CORE_1 = 2
    CORE_2 = 4
    CORE_0_1 = 3
    CORE_0_1_2 = 7
    ALL = 0xFFFF


# Iterating an IntFlag skips multi-bit and zero members on Python >= 3.11; list them all.
ALL_MASKS = tuple(CoreMask.__members__.values())

_SOC_MASKS: dict[str, frozenset[CoreMask]] = {
    "rk3588": frozenset(ALL_MASKS),
    "rk3576": frozenset(
        {CoreMask.AUTO, CoreMask.CORE_0, CoreMask.CORE_1, CoreMask.CORE_0_1, CoreMask.ALL}
    ),
}
_SINGLE_CORE = frozenset({CoreMask.AUTO})
# NPU cores per SoC, for Pool's default of one context per core.
SOC_CORES = {"rk3588": (CoreMask.CORE_0, CoreMask.CORE_1, CoreMask.CORE_2),
             "rk3576": (CoreMask.CORE_0, CoreMask.CORE_1)}  # fmt: skip

MaskLike = Union[CoreMask, int, str]


def parse_mask(value: MaskLike) -> CoreMask:
    """A CoreMask from a CoreMask, an int value, or a string.

    Strings name cores ("0" is CORE_0, "0_1", "CORE_2", "auto", "all", "RKNN_NPU_CORE_ALL") or
    give the value in hex ("0x3").
    """
    if isinstance(value, str):
        key = value.strip().upper()
        if key.startswith("0X"):
            return parse_mask(int(key, 0))
        key = key.removeprefix("RKNN_NPU_").removeprefix("CORE_")
        for name in (key, f"CORE_{key}"):
            if name in CoreMask.__members__:
                return CoreMask[name]
        raise ValueError(
            f"unknown core mask {value!r}; use one of {', '.join(CoreMask.__members__)}"
        )
    if int(value) not in {int(m) for m in ALL_MASKS}:
        raise ValueError(
            f"core mask {int(value):#x} is not an rknn_core_mask value; use one of "
            + ", ".join(f"{m.name}={int(m):#x}" for m in ALL_MASKS)
        )
    return CoreMask(int(value))


def detect_soc(soc: Optional[str] = None) -> Optional[str]:
    """The SoC name ("rk3588", ...): ``soc`` if given, else $RKRT_SOC, else the device tree.

    None means unknown (no device tree, e.g. an x86 host): rkrt then passes core masks through
    and lets the runtime accept or refuse them.
    """
    chosen = soc or os.environ.get(SOC_ENV_VAR)
    if chosen:
        return chosen.strip().lower()
    try:
        compatible = DEVICE_TREE.read_bytes().decode("ascii", "replace")
    except OSError:
        return None
    for entry in compatible.split("\0"):
        match = re.fullmatch(r"rockchip,(r[kv]\d+)[a-z]?", entry.strip())
        if match:
            return match.group(1)
    return None


def allowed_masks(soc: Optional[str]) -> Optional[frozenset[CoreMask]]:
    """The masks ``soc`` can honour; None when the SoC is unknown (anything is passed on)."""
    if soc is None:
        return None
    return _SOC_MASKS.get(soc, _SINGLE_CORE)


def is_single_core(soc: Optional[str]) -> bool:
    """True for a known SoC with one NPU core, where the runtime refuses rknn_set_core_mask
    (RKNN runtime API reference 2.3.2: "It will return the error code if it is set on
    platform with a single-core NPU architecture"); False when the SoC is unknown."""
    return soc is not None and soc not in _SOC_MASKS


def validate_mask(mask: MaskLike, soc: Optional[str]) -> CoreMask:
    """``mask`` as a CoreMask, or ValueError when ``soc`` cannot honour it."""
    mask = parse_mask(mask)
    allowed = allowed_masks(soc)
    if allowed is not None and mask not in allowed:
        names = ", ".join(m.name for m in ALL_MASKS if m in allowed)
        raise ValueError(
            f"core mask {mask.name} is not available on {soc.upper()}: it supports {names}. "
            f"Pick one of those (the SoC is read from {DEVICE_TREE}; override with "
            f"${SOC_ENV_VAR} or soc=...)"
        )
    return mask
