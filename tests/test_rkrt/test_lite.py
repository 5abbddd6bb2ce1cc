"""rkrt.lite.RKNNLite: the vendor API over rkrt, on the test-double runtime."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rkrt_support import (
    inputs_for,
    library,
    mlp,
)

from rkrt.errors import DTypeError, RKNNError, ShapeError
from rkrt.lite import RKNNLite, _prepared
from rkrt.tensor import TensorSpec

REPO = Path(__file__).resolve().parents[2]

# A program written for the vendor's API, in the pattern of the rknn-toolkit-lite2 examples.
VENDOR_PROGRAM = """\
import sys

import numpy as np
from rknnlite.api import RKNNLite

rknn_model = sys.argv[1]
x = np.load(sys.argv[2])

rknn_lite = RKNNLite()

print('--> Load RKNN model')
ret = rknn_lite.load_rknn(rknn_model)
if ret != 0:
    print('Load RKNN model failed')
    exit(ret)
print('done')

print('--> Init runtime environment')
ret = rknn_lite.init_runtime(core_mask=RKNNLite.NPU_CORE_0)
if ret != 0:
    print('Init runtime environment failed')
    exit(ret)
print('done')

print('--> Running model')
for i in range(len(x)):
    outputs = rknn_lite.inference(inputs=[x[i:i + 1]])
    print('result', i, ' '.join(repr(float(v)) for v in outputs[0].ravel()))
print('done')

rknn_lite.release()
"""


def test_vendor_program_runs_unchanged_after_switching_the_import(rt, tmp_path):
    model = mlp((4, 16, 3), dtype="float16")
    path = model.save(tmp_path / "m.rknn")
    x = inputs_for(model, batch=5)[0]
    np.save(tmp_path / "x.npy", x)
    program = tmp_path / "vendor.py"
    switched = VENDOR_PROGRAM.replace(
        "from rknnlite.api import RKNNLite", "from rkrt.lite import RKNNLite"
    )
    assert switched.count("\n") == VENDOR_PROGRAM.count("\n")  # one line changed, nothing else
    program.write_text(switched)
    done = subprocess.run(
        [sys.executable, str(program), str(path), str(tmp_path / "x.npy")],
        capture_output=True, text=True, cwd=REPO, timeout=120,
        env={"RKRT_LIBRARY": str(library()), "RKRT_SOC": "rk3588", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split()[2:] for line in done.stdout.splitlines() if line.startswith("result")]
    got = np.array(rows, dtype=np.float32)
    np.testing.assert_array_equal(got, model.reference(x)[0])


def test_constants_are_the_vendors():
    assert (RKNNLite.NPU_CORE_AUTO, RKNNLite.NPU_CORE_0, RKNNLite.NPU_CORE_1,
            RKNNLite.NPU_CORE_2, RKNNLite.NPU_CORE_0_1, RKNNLite.NPU_CORE_0_1_2,
            RKNNLite.NPU_CORE_ALL) == (0, 1, 2, 4, 3, 7, 0xFFFF)  # fmt: skip


def _ready(tmp_path: Path, model=None, **init) -> RKNNLite:
    model = model or mlp((4, 8, 3))
    lite = RKNNLite()
    assert lite.load_rknn(model.save(tmp_path / "m.rknn")) == 0
    assert lite.init_runtime(**init) == 0
    return lite


def test_inference_matches_reference_and_releases(rt, tmp_path):
    model = mlp((4, 8, 3), dtype="float32")
    lite = _ready(tmp_path, model)
    x = inputs_for(model)[0]
    out = lite.inference(inputs=[x])
    assert isinstance(out, list) and len(out) == 1 and out[0].dtype == np.float32
    np.testing.assert_allclose(out[0], model.reference(x)[0], rtol=1e-6)
    lite.release()
    lite.release()
    assert rt.live()["contexts"] == 0
    with pytest.raises(RuntimeError, match="before a successful init_runtime"):
        lite.inference(inputs=[x])
    assert lite.init_runtime() == 0  # the model stays loaded after release
    np.testing.assert_array_equal(lite.inference(inputs=[x])[0], out[0])
    lite.release()


def test_return_codes_and_logged_reasons(rt, tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="rkrt.lite")
    lite = RKNNLite()
    assert lite.init_runtime() == -1
    assert "call load_rknn(path) first" in caplog.text
    assert lite.load_rknn(tmp_path / "missing.rknn") == -1
    assert "cannot read" in caplog.text and "missing.rknn" in caplog.text
    (tmp_path / "garbage.rknn").write_bytes(b"not a model")
    assert lite.load_rknn(tmp_path / "garbage.rknn") == 0  # read only; checked at init
    assert lite.init_runtime() == -1
    assert "RKNN_ERR_MODEL_INVALID" in caplog.text
    assert rt.live()["contexts"] == 0


def test_core_masks(rt, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("RKRT_SOC", "rk3588")
    lite = _ready(tmp_path, core_mask=RKNNLite.NPU_CORE_0_1_2)
    assert rt.calls("rknn_set_core_mask") == 1
    lite.release()
    monkeypatch.setenv("RKRT_SOC", "rk3576")
    monkeypatch.setenv("RKRT_FAKE_SOC", "rk3576")
    lite = RKNNLite()
    assert lite.load_rknn(tmp_path / "m.rknn") == 0
    assert lite.init_runtime(core_mask=RKNNLite.NPU_CORE_2) == -1
    assert "CORE_2 is not available on RK3576" in caplog.text
    assert lite.init_runtime(core_mask=RKNNLite.NPU_CORE_1) == 0
    lite.release()
    # SoC unknown to rkrt (no device tree here): the runtime itself refuses the mask.
    monkeypatch.delenv("RKRT_SOC")
    monkeypatch.setenv("RKRT_FAKE_SOC", "rk3568")
    assert lite.init_runtime(core_mask=RKNNLite.NPU_CORE_0) == -1
    assert "rknn_set_core_mask() failed with RKNN_ERR_PARAM_INVALID" in caplog.text
    assert rt.live()["contexts"] == 0


def test_wrong_shape_raises_instead_of_truncating(rt, tmp_path):
    model = mlp((4, 8, 3))
    lite = _ready(tmp_path, model)
    before = rt.calls("rknn_inputs_set")
    for bad in (np.zeros((1, 5), np.float32), np.zeros((2, 4), np.float32),
                np.zeros((1, 1, 4), np.float32), np.zeros(4, np.float32)):  # fmt: skip
        with pytest.raises(ShapeError):
            lite.inference(inputs=[bad])
    assert rt.calls("rknn_inputs_set") == before
    assert rt.counter("size_mismatch") == 0
    lite.release()


def test_int64_raises_float64_narrowed(rt, tmp_path):
    model = mlp((4, 8, 3))
    lite = _ready(tmp_path, model)
    x = inputs_for(model)[0]
    with pytest.raises(DTypeError, match="int64"):
        lite.inference(inputs=[np.ones((1, 4), np.int64)])
    with pytest.raises(DTypeError, match="int32"):
        lite.inference(inputs=[np.ones((1, 4), np.int32)])
    np.testing.assert_array_equal(
        lite.inference(inputs=[x.astype(np.float64)])[0], lite.inference(inputs=[x])[0]
    )
    u8 = np.arange(4, dtype=np.uint8)[None]
    np.testing.assert_allclose(lite.inference(inputs=[u8])[0], model.reference(u8)[0], atol=1e-3)
    lite.release()


def test_runtime_failure_raises_rknn_error(rt, tmp_path):
    lite = _ready(tmp_path)
    rt.inject("rknn_run", nth=1, code=-1)
    with pytest.raises(RKNNError) as info:
        lite.inference(inputs=[np.zeros((1, 4), np.float32)])
    assert info.value.code == -1 and info.value.function == "rknn_run"
    assert lite.inference(inputs=[np.zeros((1, 4), np.float32)])[0].shape == (1, 3)
    lite.release()
    rt.reset()


def test_argument_errors(rt, tmp_path):
    lite = _ready(tmp_path)
    x = np.zeros((1, 4), np.float32)
    with pytest.raises(ValueError, match="inputs_pass_through"):
        lite.inference(inputs=[x], inputs_pass_through=[1])
    assert lite.inference(inputs=[x], inputs_pass_through=[0])[0].shape == (1, 3)
    with pytest.raises(ValueError, match="data_format 'nc' is not one of"):
        lite.inference(inputs=[x], data_format="nc")
    with pytest.raises(ValueError, match="2 entries for 1 inputs"):
        lite.inference(inputs=[x], data_format=["nhwc", "nchw"])
    with pytest.raises(TypeError, match="inputs must be a list"):
        lite.inference(inputs=x)
    with pytest.raises(TypeError, match="takes 1 input"):
        lite.inference(inputs=[x, x])
    # data_format is about 4-D layouts; 2-D inputs pass through either way.
    assert lite.inference(inputs=[x], data_format="nchw")[0].shape == (1, 3)
    lite.release()


def test_several_inputs_and_dynamic_batches(rt, tmp_path):
    model = mlp((5, 8, 3), dtype="float32", inputs=[("a", 2), ("b", 3)], batch_sizes=(1, 8))
    lite = _ready(tmp_path, model)
    a, b = inputs_for(model, batch=8)
    np.testing.assert_allclose(lite.inference(inputs=[a, b])[0], model.reference(a, b)[0],
                               rtol=1e-6)  # fmt: skip
    np.testing.assert_allclose(lite.inference(inputs=[a[:1], b[:1]])[0],
                               model.reference(a[:1], b[:1])[0], rtol=1e-6)  # fmt: skip
    lite.release()


def _spec(fmt: str, shape: tuple[int, ...]) -> TensorSpec:
    size = 2 * int(np.prod(shape))
    return TensorSpec(index=0, name="img", shape=shape, dtype=np.dtype(np.float16), format=fmt,
                      qnt_type="NONE", scale=1.0, zero_point=0, size=size)  # fmt: skip


def test_data_format_transposes_4d_inputs_to_the_models_layout():
    nchw = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    nhwc_model = _spec("NHWC", (2, 4, 5, 3))
    got = _prepared(nchw, "nchw", nhwc_model)
    assert got.shape == (2, 4, 5, 3) and got.flags.c_contiguous
    assert got[1, 2, 3, 0] == nchw[1, 0, 2, 3]
    assert _prepared(nchw, "nhwc", nhwc_model) is nchw  # already the model's layout
    assert _prepared(nchw, None, nhwc_model) is nchw
    nhwc = nchw  # the same array read as (N, H, W, C) = (2, 3, 4, 5)
    back = _prepared(nhwc, "nhwc", _spec("NCHW", (2, 5, 3, 4)))
    assert back.shape == (2, 5, 3, 4) and back[1, 4, 0, 2] == nhwc[1, 0, 2, 4]
