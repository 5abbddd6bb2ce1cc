"""Pipelines: board-side steps first, affine steps folded into the estimator's first layer.

A Pipeline is read as [board-side steps (ColumnTransformer, SimpleImputer, OneHotEncoder,
OrdinalEncoder)] + [affine steps (scalers, PCA)] + estimator: the board-side steps become
the model's preparation (see emit.converters.columns), the affine ones one map folded
into the first dense layer.
"""

from __future__ import annotations

import dataclasses

from sklearn.pipeline import Pipeline

from emit.converters.columns import flatten, split_steps
from emit.converters.registry import lower, register
from emit.errors import UnsupportedModelError
from emit.network import Network
from rkrt.metadata import Preparation


@register(Pipeline)
def convert_pipeline(pipeline: Pipeline) -> Network:
    steps = flatten(pipeline)
    if not steps:
        raise UnsupportedModelError("the Pipeline has no estimator step to convert")
    *preprocessing, final = steps
    network = lower(final)
    if network.preparation is not None:
        raise UnsupportedModelError(
            f"the Pipeline's final step {type(final).__name__} has board-side steps of its own; "
            "put the ColumnTransformer, imputers and encoders in the outer Pipeline"
        )
    board, affine = split_steps(preprocessing, "the Pipeline")
    if affine is not None:
        network = network.after(affine)
    if not board:
        return network
    names = getattr(pipeline, "feature_names_in_", None)
    preparation = Preparation(
        n_features_in=int(pipeline.n_features_in_),
        feature_names_in=None if names is None else tuple(str(n) for n in names),
        steps=board,
    )
    return dataclasses.replace(network, preparation=preparation)
