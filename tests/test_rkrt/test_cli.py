"""python -m rkrt info / bench, on the test-double runtime."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from rkrt_support import library, mlp

from rkrt.cli import main


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_info_describes_the_model(rt, tmp_path) -> None:
    path = mlp(dtype="int8", custom_string="v=1", batch_sizes=(1, 8)).save(tmp_path / "m.rknn")
    code, out, _ = _run("info", str(path))
    assert code == 0
    for text in ("api 2.5.0 (fake), driver 0.9.8 (fake)", "'input'", "shape=(1, 4)", "dtype=int8",
                 "qnt=AFFINE_ASYMMETRIC scale=0.0625 zp=0", "'output'", "custom string:  'v=1'",
                 "input shapes:   ((1, 4),), ((8, 4),)"):  # fmt: skip
        assert text in out, text


def test_bench_reports_latency_and_throughput(rt, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RKRT_SOC", "rk3588")
    monkeypatch.setenv("RKRT_FAKE_SOC", "rk3588")
    path = mlp().save(tmp_path / "m.rknn")
    variants = [[], ["--zero-copy"], ["--threads", "3"], ["--core-mask", "0_1", "--threads", "2"]]
    for extra in variants:
        rt.reset()
        code, out, err = _run("bench", str(path), "-n", "200", *extra)
        assert code == 0, err
        assert "200 inferences" in out and "p50" in out and "p99" in out and "inferences/s" in out
        assert rt.calls("rknn_run") == 200 + 10 * int(extra[-1] if "--threads" in extra else 1)
    assert "CORE_0, CORE_1, CORE_2" in _run("bench", str(path), "-n", "5", "--threads", "3")[1]
    assert "CORE_0_1, CORE_0_1" in _run("bench", str(path), "-n", "5", "--threads", "2",
                                        "--core-mask", "0_1")[1]  # fmt: skip


def test_errors_are_one_line_and_exit_1(rt, tmp_path, monkeypatch) -> None:
    code, _, err = _run("info", str(tmp_path / "missing.rknn"))
    assert code == 1 and err.startswith("rkrt: error:") and "missing.rknn" in err
    bad = tmp_path / "bad.rknn"
    bad.write_bytes(b"not a model")
    assert "RKNN_ERR_MODEL_INVALID" in _run("info", str(bad))[2]
    monkeypatch.setenv("RKRT_SOC", "rk3568")
    code, _, err = _run("bench", str(mlp().save(tmp_path / "m.rknn")), "--core-mask", "0")
    assert code == 1 and "not available on RK3568" in err


def test_module_entry_point(tmp_path) -> None:
    path = mlp().save(tmp_path / "m.rknn")
    env = dict(os.environ, RKRT_LIBRARY=str(library()))
    done = subprocess.run([sys.executable, "-m", "rkrt", "info", str(path)], env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0 and "sdk version" in done.stdout
    done = subprocess.run([sys.executable, "-m", "rkrt"], capture_output=True, text=True)
    assert done.returncode == 2 and "info" in done.stderr
