"""Where each layer of a built model runs (NPU or CPU), read from the toolkit's build log.

The .rknn file records no per-op placement, so the "Network Layer Information Table"
that rknn-toolkit2 prints during a verbose build is the only source. A model built for
several batch sizes prints one table per size; placement can differ between them (a
Reshape may run on the NPU at batch 1 and on the CPU at batch 32), so every table is kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Tuple

# Layers that only move or reinterpret data. Anything else on the CPU is a compute
# fallback worth flagging: it costs a round trip through DDR and CPU time per call.
DATA_MOVEMENT_OPS = frozenset(
    {"InputOperator", "OutputOperator", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten"}
)

_TABLE_TITLE = "Network Layer Information Table"
# Columns: ID OpType DataType Target InputShape OutputShape Cycles RW FullName; no field
# holds a space, the input shape of the InputOperator is a backslash.
_ROW = re.compile(
    r"^\s*(?P<id>\d+)\s+(?P<op>\S+)\s+(?P<dtype>\S+)\s+(?P<target>\S+)\s+(?P<inp>\S+)\s+"
    r"(?P<out>\S+)\s+\S+\s+\S+\s+(?P<name>\S+)\s*$"
)
_LOG_PREFIX = re.compile(r"^[DIWE] RKNN: \[[^\]]*\]\s?")


@dataclass(frozen=True)
class Layer:
    """One row of the toolkit's layer table."""

    name: str
    op_type: str
    target: str
    dtype: str
    output_shape: str

    @property
    def is_compute(self) -> bool:
        """False for layers that only move data (input, output, reshapes)."""
        return self.op_type not in DATA_MOVEMENT_OPS


@dataclass(frozen=True)
class Placement:
    """The layer tables of one build, keyed by the batch size each graph was compiled for."""

    by_batch: Dict[int, Tuple[Layer, ...]]

    def cpu_compute_layers(self) -> List[Tuple[int, Layer]]:
        """(batch size, layer) for every compute layer that fell back to the CPU."""
        return [
            (batch, layer)
            for batch, layers in sorted(self.by_batch.items())
            for layer in layers
            if layer.is_compute and layer.target != "NPU"
        ]

    @property
    def all_compute_on_npu(self) -> bool:
        return bool(self.by_batch) and not self.cpu_compute_layers()

    def summary(self) -> str:
        """One line: how many compute layers run on the NPU, and which did not."""
        if not self.by_batch:
            return "placement unknown (the build log has no layer table)"
        layers = self.by_batch[max(self.by_batch)]
        compute = [la for la in layers if la.is_compute]
        ops = ", ".join(f"{la.op_type}" for la in compute)
        fallback = self.cpu_compute_layers()
        if not fallback:
            return f"all {len(compute)} compute layers on the NPU ({ops})"
        names = ", ".join(f"{la.op_type} {la.name} (batch {b})" for b, la in fallback)
        return f"{len(fallback)} compute layer(s) on the CPU: {names}"

    def to_dict(self) -> dict:
        return {
            str(batch): [
                {"name": la.name, "op_type": la.op_type, "target": la.target, "dtype": la.dtype}
                for la in layers
            ]
            for batch, layers in sorted(self.by_batch.items())
        }


def parse_placement(log: str) -> Placement:
    """Read every layer table in a verbose build log.

    A table's batch size is the first dimension of its InputOperator's output shape.
    """
    tables: Dict[int, Tuple[Layer, ...]] = {}
    rows: List[Layer] = []
    in_table = False
    for raw in log.splitlines():
        line = _LOG_PREFIX.sub("", raw)
        if _TABLE_TITLE in line:
            in_table, rows = True, []
            continue
        if not in_table:
            continue
        match = _ROW.match(line)
        if match:
            rows.append(
                Layer(
                    name=match["name"].split(":", 1)[-1],
                    op_type=match["op"],
                    target=match["target"],
                    dtype=match["dtype"],
                    output_shape=match["out"],
                )
            )
        elif rows and line.strip().startswith("---"):
            # The dashed rule after the last row closes the table.
            tables[_batch_of(rows)] = tuple(rows)
            in_table = False
    return Placement(by_batch=tables)


def _batch_of(rows: List[Layer]) -> int:
    for layer in rows:
        if layer.op_type == "InputOperator":
            dims = re.findall(r"\d+", layer.output_shape)
            if dims:
                return int(dims[0])
    raise ValueError(
        "a layer table in the toolkit log has no InputOperator with a shape; "
        "this rknn-toolkit2 version prints a table emit cannot read"
    )
