"""Linear models: one dense layer holding coef_ and intercept_."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    Ridge,
    SGDClassifier,
    SGDRegressor,
)
from sklearn.svm import LinearSVC, LinearSVR

from emit.converters.heads import classifier_spec, mirrored_binary
from emit.converters.registry import register
from emit.network import Dense, Network, OutputSpec


@register(LinearRegression, Ridge, Lasso, ElasticNet, SGDRegressor, LinearSVR)
def convert_linear_regressor(model: Any) -> Network:
    weight, bias = _weight_and_bias(model)
    spec = OutputSpec(task="regressor", outputs="values", classes=None, n_outputs=bias.size)
    return Network(layers=(Dense(weight, bias, "identity"),), spec=spec)


@register(LogisticRegression)
def convert_logistic_regression(model: LogisticRegression) -> Network:
    """Probabilities: a sigmoid for two classes, a softmax (multinomial) for more."""
    return _classifier(model, probabilistic=True)


@register(SGDClassifier)
def convert_sgd_classifier(model: SGDClassifier) -> Network:
    """Probabilities for a binary log-loss model, decision_function values otherwise.

    A multiclass log-loss model's predict_proba normalises one-vs-rest sigmoids by
    their sum, a division the NPU op set lacks, so emit outputs its decision values
    (argmax gives the same label).
    """
    return _classifier(model, probabilistic=model.loss == "log_loss" and model.coef_.shape[0] == 1)


@register(LinearSVC)
def convert_linear_svc(model: LinearSVC) -> Network:
    """decision_function values."""
    return _classifier(model, probabilistic=False)


def _classifier(model: Any, *, probabilistic: bool) -> Network:
    weight, bias = _weight_and_bias(model)
    if weight.shape[1] == 1:
        head = mirrored_binary(weight, bias, "sigmoid" if probabilistic else "identity")
    else:
        head = Dense(weight, bias, "softmax" if probabilistic else "identity")
    spec = classifier_spec(model, "probabilities" if probabilistic else "decision")
    return Network(layers=(head,), spec=spec)


def _weight_and_bias(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """coef_ as an (n_features, n_outputs) weight, intercept_ as an (n_outputs,) bias."""
    coef = model.coef_
    if scipy.sparse.issparse(coef):  # after model.sparsify()
        coef = coef.toarray()
    coef = np.atleast_2d(np.asarray(coef, dtype=np.float64))
    # intercept_ is a scalar 0.0 when fit_intercept=False, or for single-target models.
    bias = np.broadcast_to(np.asarray(model.intercept_, dtype=np.float64), coef.shape[:1])
    return coef.T, bias.copy()
