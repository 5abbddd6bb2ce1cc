"""Write a `Network` as an ONNX model of NPU-friendly ops (Gemm, Relu, Sigmoid, Tanh, Softmax).

Weights go straight into the graph's initializer list as raw little-endian
float32 bytes: no per-weight Python lists (scirknn's Constant-node route is ~40x
slower on an 80 MB MLP) and no `helper.make_graph(initializer=...)`, which
copies every tensor once more.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from emit._version import __version__
from emit.network import Network, layer_name

INPUT_NAME = "input"
OUTPUT_NAME = "output"
MIN_OPSET, MAX_OPSET = 9, 19  # what rknn-toolkit2 2.5 converts without warnings
DEFAULT_OPSET = 13

_ACTIVATION_OPS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softmax": "Softmax"}


def build_model(network: Network, *, batch_size: int, opset: int, name: str) -> onnx.ModelProto:
    """The ONNX model computing `network` on a float32 (batch_size, n_features_in) "input".

    `network` must hold float32 weights (see `Network.astype`); `opset` is taken as
    given (`emit.to_onnx` keeps it within MIN_OPSET..MAX_OPSET). The result has
    static shapes, one float32 output "output" of shape (batch_size, n_outputs),
    and the same bytes for the same arguments.
    """
    model = onnx.ModelProto()
    opset_id = model.opset_import.add()
    opset_id.domain, opset_id.version = "", opset
    model.ir_version = helper.find_min_ir_version_for([opset_id])
    model.producer_name, model.producer_version = "emit", __version__
    graph = model.graph
    graph.name = name
    graph.input.append(_float_info(INPUT_NAME, batch_size, network.n_features_in))
    graph.output.append(_float_info(OUTPUT_NAME, batch_size, network.spec.n_outputs))

    tensor = INPUT_NAME
    last = len(network.layers) - 1
    for index, layer in enumerate(network.layers):
        prefix = layer_name(index)
        _add_initializer(graph, f"{prefix}.weight", layer.weight)
        _add_initializer(graph, f"{prefix}.bias", layer.bias)
        has_activation = layer.activation != "identity"
        linear = OUTPUT_NAME if index == last and not has_activation else f"{prefix}.linear"
        graph.node.append(
            helper.make_node(
                "Gemm",
                [tensor, f"{prefix}.weight", f"{prefix}.bias"],
                [linear],
                name=f"{prefix}.gemm",
            )
        )
        tensor = linear
        if has_activation:
            op = _ACTIVATION_OPS[layer.activation]
            activated = OUTPUT_NAME if index == last else f"{prefix}.{layer.activation}"
            # axis=1 means "per row" for 2-D input under both Softmax-1 and Softmax-13 rules.
            attributes = {"axis": 1} if op == "Softmax" else {}
            graph.node.append(
                helper.make_node(
                    op, [tensor], [activated], name=f"{prefix}.{layer.activation}", **attributes
                )
            )
            tensor = activated
    return model


def _add_initializer(graph: onnx.GraphProto, name: str, array: np.ndarray) -> None:
    if array.dtype != np.float32:
        raise TypeError(f"initializer {name} must be float32, got {array.dtype}")
    tensor = graph.initializer.add()
    tensor.name = name
    tensor.data_type = TensorProto.FLOAT
    tensor.dims.extend(array.shape)
    tensor.raw_data = array.astype("<f4", copy=False).tobytes()


def _float_info(name: str, batch_size: int, width: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch_size, width])
