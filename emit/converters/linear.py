"""Linear models: one dense layer holding coef_ and intercept_ (and a link the NPU has)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import (
    ARDRegression,
    BayesianRidge,
    ElasticNet,
    GammaRegressor,
    HuberRegressor,
    Lasso,
    LinearRegression,
    LogisticRegression,
    LogisticRegressionCV,
    PassiveAggressiveClassifier,
    PassiveAggressiveRegressor,
    Perceptron,
    PoissonRegressor,
    QuantileRegressor,
    Ridge,
    RidgeClassifier,
    RidgeClassifierCV,
    SGDClassifier,
    SGDRegressor,
    TheilSenRegressor,
    TweedieRegressor,
)
from sklearn.svm import LinearSVC, LinearSVR

from emit.converters.heads import classes_of, classifier_spec, mirrored_binary
from emit.converters.registry import register
from emit.errors import UnsupportedModelError
from emit.network import Dense, Network, OutputSpec


@register(
    LinearRegression,
    Ridge,
    Lasso,
    ElasticNet,
    SGDRegressor,
    LinearSVR,
    PassiveAggressiveRegressor,
    HuberRegressor,
    BayesianRidge,
    ARDRegression,
    TheilSenRegressor,
    QuantileRegressor,
)
def convert_linear_regressor(model: Any) -> Network:
    """predict: X @ coef_ + intercept_ (BayesianRidge/ARDRegression: the posterior mean)."""
    return _regressor(model, "identity")


@register(PoissonRegressor, GammaRegressor, TweedieRegressor)
def convert_glm(model: Any) -> Network:
    """predict: X @ coef_ + intercept_ for the identity link (TweedieRegressor(power=0)).

    The log link's inverse is Exp, which rknn-toolkit2 2.5 places on the CPU for rk3588
    (measured on its simulator: Gemm on the NPU, Exp on the CPU), so it is refused.
    """
    link = type(model._base_loss.link).__name__
    if link != "IdentityLink":
        raise UnsupportedModelError(
            f"{type(model).__name__} predicts through the inverse of its {link} (exp), which "
            "the RKNN NPU does not run (rknn-toolkit2 places Exp on the CPU); emit converts "
            "the identity link only: TweedieRegressor(power=0) or link='identity'"
        )
    return _regressor(model, "identity")


@register(LogisticRegression, LogisticRegressionCV, LinearDiscriminantAnalysis)
def convert_logistic_regression(model: Any) -> Network:
    """Probabilities: a sigmoid for two classes, a softmax (multinomial) for more.

    LinearDiscriminantAnalysis computes predict_proba from its decision function the
    same way (expit for two classes, softmax otherwise).
    """
    return _classifier(model, probabilistic=True)


@register(RidgeClassifier, RidgeClassifierCV, Perceptron, PassiveAggressiveClassifier)
def convert_decision_classifier(model: Any) -> Network:
    """decision_function values; a multilabel RidgeClassifier thresholds each at 0."""
    binarizer = getattr(model, "_label_binarizer", None)
    if binarizer is not None and binarizer.y_type_.startswith("multilabel"):
        weight, bias = _weight_and_bias(model)
        spec = OutputSpec(
            task="multilabel", outputs="decision", classes=classes_of(model), n_outputs=bias.size
        )
        return Network(layers=(Dense(weight, bias, "identity"),), spec=spec)
    return _classifier(model, probabilistic=False)


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


def _regressor(model: Any, activation: str) -> Network:
    weight, bias = _weight_and_bias(model)
    spec = OutputSpec(task="regressor", outputs="values", classes=None, n_outputs=bias.size)
    return Network(layers=(Dense(weight, bias, activation),), spec=spec)


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
