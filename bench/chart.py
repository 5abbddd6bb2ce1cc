"""PNG chart of per-call latency distributions, one panel per model, from vendor_compare results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from report import LINE_LABELS


def latency_chart(lanes: list[tuple[str, dict[str, Any]]], path: Path, title: str) -> None:
    """Box plots (whiskers at p1/p99) of every lane and line, log time axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m["name"] for m in lanes[0][1]["models"]]
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 2.2 + 1.6 * len(names) * len(lanes)))
    axes = [axes] if len(names) == 1 else list(axes)
    for ax, name in zip(axes, names):
        labels, data = [], []
        for lane, result in lanes:
            model = next(m for m in result["models"] if m["name"] == name)
            for kind, line in model["lines"].items():
                labels.append(f"{lane}: {LINE_LABELS[kind]}")
                data.append(line["samples_us"])
        ax.boxplot(data, orientation="horizontal", whis=(1, 99), showfliers=False, widths=0.6)
        ax.set_yticks(range(1, len(labels) + 1), labels)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("time per inference (us, log scale; box: quartiles, whiskers: p1-p99)")
        ax.set_title(name)
        ax.grid(axis="x", which="both", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
