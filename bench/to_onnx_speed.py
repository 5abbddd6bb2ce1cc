"""`emit.to_onnx` against a Constant-node / `tolist()` construction of the same graph.

The baseline is how scirknn builds its graph: every weight matrix goes through
`ndarray.tolist()` into a `Constant` node. emit writes float32 initializers in place.
Both start from the same fitted MLPClassifier (784-4096-4096-10 by default, weights
from a one-epoch fit; `--quick`: 64-256-256-10) and both are checked to compute the
same outputs on onnxruntime before anything is timed. Prints a table and writes
bench/results/to_onnx_speed.json. Target: emit >= 10x faster.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

import emit
from emit.converters import lower
from emit.network import Network

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_SPEEDUP = 10.0
FULL = {"n_features": 784, "hidden": (4096, 4096), "n_classes": 10, "repeat": 5}
QUICK = {"n_features": 64, "hidden": (256, 256), "n_classes": 10, "repeat": 3}
_ONNX_OPS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softmax": "Softmax"}


def fitted_mlp(n_features: int, hidden: tuple[int, ...], n_classes: int) -> MLPClassifier:
    """An MLPClassifier of the given shape after one epoch on 2 random samples per class."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2 * n_classes, n_features))
    y = np.arange(2 * n_classes) % n_classes
    mlp = MLPClassifier(hidden_layer_sizes=hidden, solver="sgd", max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return mlp.fit(X, y)


def constant_node_onnx(estimator: Any, *, batch_size: int = 1, opset: int = 13) -> onnx.ModelProto:
    """The same graph as `emit.to_onnx`, built the scirknn way: tolist() into Constant nodes."""
    network: Network = lower(estimator)
    nodes = []
    tensor = "input"
    last = len(network.layers) - 1
    for index, layer in enumerate(network.layers):
        names = [f"layer{index}.weight", f"layer{index}.bias"]
        for name, values in zip(names, (layer.weight, layer.bias)):
            value = helper.make_tensor(
                name, TensorProto.FLOAT, values.shape, values.flatten().tolist()
            )
            nodes.append(helper.make_node("Constant", [], [name], value=value))
        activated = layer.activation != "identity"
        linear = "output" if index == last and not activated else f"layer{index}.linear"
        nodes.append(helper.make_node("Gemm", [tensor, *names], [linear]))
        tensor = linear
        if activated:
            out = "output" if index == last else f"layer{index}.{layer.activation}"
            attributes = {"axis": 1} if layer.activation == "softmax" else {}
            nodes.append(
                helper.make_node(_ONNX_OPS[layer.activation], [tensor], [out], **attributes)
            )
            tensor = out
    n_in, n_out = network.n_features_in, network.spec.n_outputs
    graph = helper.make_graph(
        nodes,
        "constant_nodes",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch_size, n_in])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch_size, n_out])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    return model


def seconds(build: Callable[[], onnx.ModelProto]) -> float:
    start = time.perf_counter()
    build()
    return time.perf_counter() - start


def outputs(model: onnx.ModelProto, X: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": X})[0]


def run(quick: bool, results: Path) -> dict[str, Any]:
    shape = QUICK if quick else FULL
    mlp = fitted_mlp(shape["n_features"], shape["hidden"], shape["n_classes"])
    layers = [shape["n_features"], *shape["hidden"], shape["n_classes"]]
    label = "-".join(map(str, layers))
    print(
        f"MLP {label}: {sum(w.size + b.size for w, b in zip(mlp.coefs_, mlp.intercepts_)):,} "
        f"parameters ({mlp.coefs_[0].dtype})",
        flush=True,
    )

    X = np.random.default_rng(1).normal(size=(1, shape["n_features"])).astype(np.float32)
    emitted, baseline = emit.to_onnx(mlp), constant_node_onnx(mlp)
    # Same computation, or the comparison means nothing.
    np.testing.assert_allclose(outputs(emitted, X), outputs(baseline, X), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(outputs(emitted, X), mlp.predict_proba(X), rtol=1e-4, atol=1e-5)
    sizes = {"emit": emitted.ByteSize(), "constant": baseline.ByteSize()}
    del emitted, baseline

    # Interleave the two so that noise from other processes hits both alike.
    emit_times: list[float] = []
    constant_times: list[float] = []
    for _ in range(shape["repeat"]):
        emit_times.append(seconds(lambda: emit.to_onnx(mlp)))
        constant_times.append(seconds(lambda: constant_node_onnx(mlp)))
    result = {
        "model": label,
        "quick": quick,
        "repeat": shape["repeat"],
        "weights_dtype": str(mlp.coefs_[0].dtype),
        "emit_seconds": emit_times,
        "constant_seconds": constant_times,
        "emit_median_s": statistics.median(emit_times),
        "constant_median_s": statistics.median(constant_times),
        "emit_onnx_bytes": sizes["emit"],
        "constant_onnx_bytes": sizes["constant"],
        "python": platform.python_version(),
        "onnx": onnx.__version__,
        "emit": emit.__version__,
    }
    result["speedup"] = result["constant_median_s"] / result["emit_median_s"]
    result["target_speedup"] = TARGET_SPEEDUP
    result["target_met"] = result["speedup"] >= TARGET_SPEEDUP
    results.mkdir(parents=True, exist_ok=True)
    (results / "to_onnx_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_table(result: dict[str, Any]) -> str:
    rows = [
        ("emit.to_onnx (initializers in place)", result["emit_seconds"], result["emit_onnx_bytes"]),
        ("Constant nodes from tolist()", result["constant_seconds"], result["constant_onnx_bytes"]),
    ]
    lines = [
        f"to_onnx speed, MLP {result['model']} (median of {result['repeat']}, "
        f"weights {result['weights_dtype']})",
        f"{'construction':<40}{'median ms':>11}{'min ms':>10}{'ONNX MB':>10}",
    ]
    for name, seconds, size in rows:
        lines.append(
            f"{name:<40}{statistics.median(seconds) * 1e3:>11.1f}{min(seconds) * 1e3:>10.1f}"
            f"{size / 1e6:>10.2f}"
        )
    verdict = "PASS" if result["target_met"] else "FAIL"
    lines.append(
        f"speedup {result['speedup']:.1f}x (target >= {result['target_speedup']:.0f}x): {verdict}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 64-256-256-10 MLP, 3 repeats")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args(argv)
    result = run(args.quick, args.results)
    print(format_table(result))
    print(f"wrote {args.results / 'to_onnx_speed.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
