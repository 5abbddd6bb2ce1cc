"""TransformedTargetRegressor: the regressor, its target transformer's inverse folded into
the last layer (when that inverse is affine)."""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.compose import TransformedTargetRegressor
from sklearn.preprocessing import FunctionTransformer

from emit.converters.registry import lower, lower_transform, register
from emit.errors import UnsupportedModelError
from emit.network import Affine, Network


@register(TransformedTargetRegressor)
def convert_transformed_target(model: TransformedTargetRegressor) -> Network:
    """predict = transformer_.inverse_transform(regressor_.predict(X))."""
    network = lower(model.regressor_)
    inverse = _inverse(model)
    if inverse is None:
        return network
    last = network.layers[-1]
    if last.activation != "identity":
        raise UnsupportedModelError(
            f"TransformedTargetRegressor over {type(model.regressor_).__name__}, whose output "
            f"goes through {last.activation!r}: the target transformer's inverse cannot be "
            "folded after it; use a regressor with a linear output"
        )
    folded = dataclasses.replace(
        last, weight=last.weight * inverse.matrix, bias=last.bias * inverse.matrix + inverse.offset
    )
    return dataclasses.replace(network, layers=(*network.layers[:-1], folded))


def _inverse(model: TransformedTargetRegressor) -> Affine | None:
    """The inverse of the fitted target transformer as a per-target scale and offset."""
    transformer = model.transformer_
    if type(transformer) is FunctionTransformer:
        if transformer.func is None and transformer.inverse_func is None:
            return None  # no transformer and no func: the identity
        raise UnsupportedModelError(
            "TransformedTargetRegressor(func=..., inverse_func=...) is not affine: emit folds "
            "only a scaler's inverse into the model (transformer=StandardScaler(), "
            "MinMaxScaler(), MaxAbsScaler() or RobustScaler())"
        )
    forward = lower_transform(transformer)
    if forward.matrix.ndim != 1 or not np.all(forward.matrix != 0):
        raise UnsupportedModelError(
            f"TransformedTargetRegressor(transformer={type(transformer).__name__}()) has no "
            "per-target inverse to fold; use a scaler"
        )
    return Affine(1.0 / forward.matrix, -forward.offset / forward.matrix)
