"""Pipelines: affine preprocessing steps folded into the final estimator's first layer."""

from __future__ import annotations

from typing import Any

from sklearn.pipeline import Pipeline

from emit.converters.registry import lower, lower_transform, register
from emit.errors import UnsupportedModelError
from emit.network import Network


@register(Pipeline)
def convert_pipeline(pipeline: Pipeline) -> Network:
    steps = _flatten(pipeline)
    if not steps:
        raise UnsupportedModelError("the Pipeline has no estimator step to convert")
    *preprocessing, final = steps
    network = lower(final)
    if not preprocessing:
        return network
    maps = [lower_transform(step) for step in preprocessing]
    combined = maps[0]
    for following in maps[1:]:
        combined = combined.then(following)
    return network.after(combined)


def _flatten(pipeline: Pipeline) -> list[Any]:
    """The steps in order, nested Pipelines expanded and 'passthrough'/None steps dropped."""
    steps: list[Any] = []
    for _, step in pipeline.steps:
        if isinstance(step, Pipeline):
            steps.extend(_flatten(step))
        elif step is not None and not (isinstance(step, str) and step == "passthrough"):
            steps.append(step)
    return steps
