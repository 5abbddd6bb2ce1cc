"""Core masks: the CoreMask enum, SoC detection and the per-SoC rules checked before C."""

from __future__ import annotations

import pytest
from rkrt_support import mlp

import rkrt
from rkrt import cores
from rkrt._ffi import enum
from rkrt.cores import ALL_MASKS, CoreMask, detect_soc, parse_mask, validate_mask

RK3588 = {"AUTO", "CORE_0", "CORE_1", "CORE_2", "CORE_0_1", "CORE_0_1_2", "ALL"}
RK3576 = {"AUTO", "CORE_0", "CORE_1", "CORE_0_1", "ALL"}


def test_core_mask_mirrors_the_c_enum() -> None:
    c = {k.removeprefix("RKNN_NPU_"): v for k, v in enum("rknn_core_mask").items()}
    c = {k if k[-1].isdigit() else k.removeprefix("CORE_"): v for k, v in c.items()}
    assert {m.name: int(m) for m in ALL_MASKS} == {k: v for k, v in c.items() if k != "UNDEFINED"}
    assert CoreMask.CORE_0 | CoreMask.CORE_1 == CoreMask.CORE_0_1


@pytest.mark.parametrize(
    ("text", "mask"),
    [("auto", CoreMask.AUTO), ("0_1", CoreMask.CORE_0_1), ("CORE_2", CoreMask.CORE_2),
     ("RKNN_NPU_CORE_ALL", CoreMask.ALL), ("0x7", CoreMask.CORE_0_1_2), ("0", CoreMask.CORE_0),
     ("1", CoreMask.CORE_1), ("0x3", CoreMask.CORE_0_1),
     (2, CoreMask.CORE_1), (CoreMask.ALL, CoreMask.ALL)],
)  # fmt: skip
def test_parse_mask(text, mask: CoreMask) -> None:
    assert parse_mask(text) is mask


@pytest.mark.parametrize("bad", ["CORE_3", "fast", "7", 5, 0x10000])
def test_parse_mask_refuses_unknown_values(bad) -> None:
    with pytest.raises(ValueError, match="use one of AUTO.*CORE_0.*ALL"):
        parse_mask(bad)


@pytest.mark.parametrize(
    ("soc", "allowed"),
    [("rk3588", RK3588), ("rk3576", RK3576), ("rk3568", {"AUTO"}), ("rk3562", {"AUTO"})],
)
def test_per_soc_rules(soc: str, allowed: set[str]) -> None:
    for mask in ALL_MASKS:
        if mask.name in allowed:
            assert validate_mask(mask, soc) is mask
        else:
            with pytest.raises(ValueError) as info:
                validate_mask(mask, soc)
            msg = str(info.value)
            assert soc.upper() in msg and mask.name in msg and "RKRT_SOC" in msg
            assert all(name in msg for name in allowed)


def test_unknown_soc_passes_every_mask_through() -> None:
    assert all(validate_mask(m, None) is m for m in ALL_MASKS)


def test_detect_soc_from_argument_env_and_device_tree(tmp_path, monkeypatch) -> None:
    tree = tmp_path / "compatible"
    tree.write_bytes(b"radxa,rock-5a\0rockchip,rk3588s\0")
    monkeypatch.setattr(cores, "DEVICE_TREE", tree)
    monkeypatch.delenv("RKRT_SOC", raising=False)
    assert detect_soc() == "rk3588"
    tree.write_bytes(b"firefly,rk3568-roc-pc\0rockchip,rk3568\0")
    assert detect_soc() == "rk3568"
    monkeypatch.setenv("RKRT_SOC", "RK3576")
    assert detect_soc() == "rk3576"
    assert detect_soc("rk3566") == "rk3566"
    monkeypatch.delenv("RKRT_SOC")
    monkeypatch.setattr(cores, "DEVICE_TREE", tmp_path / "absent")
    assert detect_soc() is None
    tree.write_bytes(b"acme,board\0")
    monkeypatch.setattr(cores, "DEVICE_TREE", tree)
    assert detect_soc() is None


@pytest.mark.parametrize("mask", [m for m in ALL_MASKS if m != CoreMask.AUTO])
def test_session_sets_the_mask_on_the_context(rt, monkeypatch, mask: CoreMask) -> None:
    monkeypatch.setenv("RKRT_FAKE_SOC", "rk3588")
    with rkrt.Session(mlp().to_bytes(), core_mask=mask, soc="rk3588") as s:
        assert s.core_mask is mask
        assert rt.core_mask(s._context.handle) == int(mask)


def test_refused_mask_raises_before_any_c_call(rt, monkeypatch) -> None:
    monkeypatch.setenv("RKRT_SOC", "rk3576")
    with pytest.raises(ValueError, match="CORE_2 is not available on RK3576"):
        rkrt.Session(mlp().to_bytes(), core_mask="CORE_2")
    assert rt.total_calls() == 0
    with rkrt.Session(mlp().to_bytes()) as s:
        calls = rt.total_calls()
        with pytest.raises(ValueError, match="RK3576"):
            s.set_core_mask(CoreMask.CORE_0_1_2)
        assert rt.total_calls() == calls and s.core_mask is CoreMask.AUTO


def test_unknown_soc_lets_the_runtime_refuse(rt, monkeypatch) -> None:
    monkeypatch.setattr(cores, "DEVICE_TREE", cores.Path("/nonexistent/compatible"))
    monkeypatch.setenv("RKRT_FAKE_SOC", "rk3568")
    with rkrt.Session(mlp().to_bytes()) as s:
        with pytest.raises(rkrt.RKNNError) as info:
            s.set_core_mask("CORE_0")
        assert info.value.symbol == "RKNN_ERR_PARAM_INVALID"
        assert info.value.function == "rknn_set_core_mask" and s.core_mask is CoreMask.AUTO


def test_dup_sets_the_mask_again(rt, monkeypatch) -> None:
    monkeypatch.setenv("RKRT_FAKE_SOC", "rk3588")
    with rkrt.Session(mlp().to_bytes(), core_mask="CORE_1", soc="rk3588") as s:
        with s.dup() as same, s.dup(core_mask="CORE_2") as other:
            assert rt.core_mask(same._context.handle) == int(CoreMask.CORE_1)
            assert rt.core_mask(other._context.handle) == int(CoreMask.CORE_2)
            assert (same.core_mask, other.core_mask) == (CoreMask.CORE_1, CoreMask.CORE_2)
        assert rt.calls("rknn_set_core_mask") == 3
