"""Affine preprocessing steps, folded by the Pipeline converter into the first layer."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler

from emit.converters.registry import register_transform
from emit.errors import UnsupportedModelError
from emit.network import Affine


@register_transform(StandardScaler)
def convert_standard_scaler(scaler: StandardScaler) -> Affine:
    """(x - mean_) / scale_, either part absent when disabled."""
    # with_mean=False still records mean_ (for the variance), but transform ignores it.
    return _center_then_scale(scaler, scaler.mean_, scaler.with_mean, scaler.with_std)


@register_transform(RobustScaler)
def convert_robust_scaler(scaler: RobustScaler) -> Affine:
    """(x - center_) / scale_, either part absent when disabled."""
    return _center_then_scale(scaler, scaler.center_, scaler.with_centering, scaler.with_scaling)


@register_transform(MinMaxScaler)
def convert_min_max_scaler(scaler: MinMaxScaler) -> Affine:
    """x * scale_ + min_."""
    _refuse_clip(scaler)
    return Affine(_float64(scaler.scale_), _float64(scaler.min_))


@register_transform(MaxAbsScaler)
def convert_max_abs_scaler(scaler: MaxAbsScaler) -> Affine:
    """x / scale_."""
    _refuse_clip(scaler)
    return Affine(1.0 / _float64(scaler.scale_), np.zeros(scaler.n_features_in_))


@register_transform(PCA)
def convert_pca(pca: PCA) -> Affine:
    """(x - mean_) @ components_.T, divided by sqrt(explained_variance_) when whitening."""
    projection = _float64(pca.components_).T
    offset = -_float64(pca.mean_) @ projection
    if pca.whiten:
        scale = np.sqrt(_float64(pca.explained_variance_))
        # The same floor as PCA.transform: near-zero variances would divide by ~0.
        scale = np.maximum(scale, np.finfo(scale.dtype).eps)
        projection = projection / scale
        offset = offset / scale
    return Affine(projection, offset)


def _center_then_scale(scaler: Any, center: Any, centers: bool, scales: bool) -> Affine:
    """(x - center) / scaler.scale_, either part left out when the scaler disables it."""
    n = scaler.n_features_in_
    offset = _float64(center) if centers else np.zeros(n)
    inverse_scale = 1.0 / _float64(scaler.scale_) if scales else np.ones(n)
    return Affine(inverse_scale, -offset * inverse_scale)


def _refuse_clip(scaler: Any) -> None:
    # MaxAbsScaler has had `clip` only since scikit-learn 1.8; before, it never clips.
    if getattr(scaler, "clip", False):
        raise UnsupportedModelError(
            f"{type(scaler).__name__}(clip=True) is not affine and cannot be folded into the "
            f"model; refit with clip=False"
        )


def _float64(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)
