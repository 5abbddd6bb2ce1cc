"""MLPClassifier and MLPRegressor: one dense layer per coefs_ entry."""

from __future__ import annotations

from typing import Union

from sklearn.neural_network import MLPClassifier, MLPRegressor

from emit.converters.heads import classes_of, classifier_spec, mirrored_binary
from emit.converters.registry import register
from emit.errors import UnsupportedModelError
from emit.network import Dense, Network, OutputSpec

# scikit-learn's activation names -> emit's (ONNX op) names.
_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}


@register(MLPClassifier, MLPRegressor)
def convert_mlp(mlp: Union[MLPClassifier, MLPRegressor]) -> Network:
    hidden_activation = _activation(mlp, mlp.activation)
    hidden = tuple(
        Dense(weight, bias, hidden_activation)
        for weight, bias in zip(mlp.coefs_[:-1], mlp.intercepts_[:-1])
    )
    weight, bias = mlp.coefs_[-1], mlp.intercepts_[-1]
    out = mlp.out_activation_
    if isinstance(mlp, MLPRegressor):
        if out != "identity":
            raise UnsupportedModelError(
                f"MLPRegressor(loss={mlp.loss!r}) ends in {out!r}, which has no NPU op; "
                "emit converts MLPRegressor(loss='squared_error')"
            )
        spec = OutputSpec(task="regressor", outputs="values", classes=None, n_outputs=bias.size)
        head = Dense(weight, bias, "identity")
    elif out == "softmax":
        spec = classifier_spec(mlp, "probabilities")
        head = Dense(weight, bias, "softmax")
    elif out == "logistic" and mlp.n_outputs_ == 1:
        spec = classifier_spec(mlp, "probabilities")
        head = mirrored_binary(weight, bias, "sigmoid")
    elif out == "logistic":
        # Multilabel: an independent logistic per label; indicator = probability > 0.5.
        spec = OutputSpec(
            task="multilabel",
            outputs="probabilities",
            classes=classes_of(mlp),
            n_outputs=bias.size,
        )
        head = Dense(weight, bias, "sigmoid")
    else:
        raise UnsupportedModelError(
            f"MLPClassifier.out_activation_={out!r} has no NPU op; "
            "emit converts logistic (binary, multilabel) and softmax (multiclass) outputs"
        )
    return Network(layers=(*hidden, head), spec=spec)


def _activation(mlp: Union[MLPClassifier, MLPRegressor], value: str) -> str:
    if value not in _ACTIVATIONS:
        raise UnsupportedModelError(
            f"{type(mlp).__name__}(activation={value!r}) has no NPU op; "
            f"supported: {sorted(_ACTIVATIONS)}"
        )
    return _ACTIVATIONS[value]
