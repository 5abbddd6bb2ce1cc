"""Which scikit-learn classes emit converts, and the function that converts each.

Adding an estimator is one decorated function in a family module::

    @register(MyRegressor)
    def convert_my_regressor(estimator) -> Network: ...

Estimator converters return a `Network`; preprocessing converters (registered with
`register_transform`) return an `Affine` map, which a Pipeline folds into the
first layer of its final estimator; board-side converters (`register_board`: column
selection, imputers, encoders) return a step of the model's preparation, which the
board runs in numpy before the NPU (see emit.converters.columns). Lookup is by exact
class: a subclass may change what `predict` computes, so it must be registered on its own.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, TypeVar

from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.utils.validation import check_is_fitted

from emit.errors import NotFittedError, UnsupportedModelError
from emit.network import Affine, Network

EstimatorConverter = Callable[[Any], Network]
TransformConverter = Callable[[Any], Affine]
# A preparation step, and the affine map its output goes through next (None: identity).
BoardConverter = Callable[[Any], "tuple[Any, Optional[Affine]]"]
F = TypeVar("F", bound=Callable[..., Any])

_ESTIMATORS: dict[type, EstimatorConverter] = {}
_TRANSFORMS: dict[type, TransformConverter] = {}
_BOARD: dict[type, BoardConverter] = {}


def register(*classes: type) -> Callable[[F], F]:
    """Decorator registering a converter ``(fitted estimator) -> Network`` for `classes`."""
    return _registrar(_ESTIMATORS, classes)


def register_transform(*classes: type) -> Callable[[F], F]:
    """Decorator registering a converter ``(fitted transformer) -> Affine`` for `classes`."""
    return _registrar(_TRANSFORMS, classes)


def register_board(*classes: type) -> Callable[[F], F]:
    """Decorator registering a converter ``(fitted transformer) -> (preparation step,
    Affine or None)`` for steps the board runs before the NPU."""
    return _registrar(_BOARD, classes)


def supported() -> dict[str, list[str]]:
    """Names of the convertible classes: ``{"estimators": [...], "preprocessing": [...],
    "board": [...]}`` (preprocessing: affine steps folded into the first layer; board:
    steps run in numpy on the board before them)."""
    return {
        "estimators": _names(_ESTIMATORS),
        "preprocessing": _names(_TRANSFORMS),
        "board": _names(_BOARD),
    }


def is_board_step(step: Any) -> bool:
    return type(step) in _BOARD


def lower_board(step: Any) -> tuple[Any, Optional[Affine]]:
    """A fitted board-side step as a preparation step and the affine map after it."""
    require_fitted(step)
    return _BOARD[type(step)](step)


def lower(estimator: Any) -> Network:
    """Convert a fitted estimator into a `Network`, or raise `UnsupportedModelError`."""
    converter = _ESTIMATORS.get(type(estimator))
    if converter is None:
        if type(estimator) in _TRANSFORMS or type(estimator) in _BOARD:
            raise UnsupportedModelError(
                f"{_name(type(estimator))} is a preprocessing step: emit converts it only inside "
                f"a Pipeline ending in one of {', '.join(_names(_ESTIMATORS))}"
            )
        raise UnsupportedModelError(
            f"emit cannot convert {_name(type(estimator))}; supported estimators: "
            f"{', '.join(_names(_ESTIMATORS))} (optionally in a Pipeline after "
            f"{_steps_listed()})"
        )
    require_fitted(estimator)
    return converter(estimator)


def lower_transform(transformer: Any) -> Affine:
    """Convert a fitted preprocessing step into an `Affine` map."""
    converter = _TRANSFORMS.get(type(transformer))
    if converter is None:
        raise UnsupportedModelError(
            f"emit cannot fold the Pipeline step {_name(type(transformer))} into the model; "
            f"supported preprocessing steps: {_steps_listed()}"
        )
    require_fitted(transformer)
    return converter(transformer)


def require_fitted(estimator: Any) -> None:
    """Raise emit's `NotFittedError` (a scikit-learn NotFittedError too) if not fitted."""
    try:
        check_is_fitted(estimator)
    except SklearnNotFittedError as error:
        raise NotFittedError(
            f"{type(estimator).__name__} is not fitted: call its fit(X, y) before converting it"
        ) from error


def _registrar(table: dict[type, Any], classes: tuple[type, ...]) -> Callable[[F], F]:
    if not classes or not all(isinstance(cls, type) for cls in classes):
        raise TypeError(f"register the converter for one or more classes, got {classes!r}")

    def decorate(converter: F) -> F:
        for cls in classes:
            if cls in _ESTIMATORS or cls in _TRANSFORMS or cls in _BOARD:
                raise ValueError(f"a converter for {_name(cls)} is already registered")
            table[cls] = converter
        return converter

    return decorate


def _steps_listed() -> str:
    return (
        f"{', '.join(_names(_TRANSFORMS))} (folded into the first layer), after "
        f"{', '.join(_names(_BOARD))} (run on the board)"
    )


def _names(table: dict[type, Any]) -> list[str]:
    return sorted(_name(cls) for cls in table)


def _name(cls: type) -> str:
    return cls.__name__
