"""Proof that a converted model computes what the scikit-learn estimator computes.

The built model runs on the toolkit's simulator at every compiled batch size; its outputs
are compared with the estimator's own (`predict_proba`, `decision_function` or `predict`,
whichever the model outputs) and its labels with `predict`.

Errors: for probabilities, the max absolute difference; for values and decision scores,
whose scale is the user's, the max absolute difference divided by the largest magnitude
the estimator produced on the same rows (so 1e-2 means "1 % of the output's range").
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from emit.errors import EmitError
from emit.export import reference_values
from emit.network import OutputSpec


class VerificationError(EmitError, ValueError):
    """The converted model's outputs differ from the estimator's beyond the tolerance.

    `accuracy` holds the measured figures.
    """

    def __init__(self, message: str, accuracy: Optional[Accuracy] = None) -> None:
        super().__init__(message)
        self.accuracy = accuracy


class VerificationWarning(UserWarning):
    """Like `VerificationError`, issued instead of raising when the tolerance says `warn`."""


@dataclass(frozen=True)
class Tolerance:
    """Accepted differences; None takes the default for the model's quantization.

    `max_error` bounds the error as defined in this module's docstring; `min_agreement`
    the fraction of rows whose label (or, multilabel, whose every label) matches
    `predict`. With `warn=True` a miss warns (`VerificationWarning`) instead of raising.
    """

    max_error: Optional[float] = None
    min_agreement: Optional[float] = None
    warn: bool = False

    def resolved(self, quantization: Optional[str]) -> Tolerance:
        """This tolerance with the defaults for `quantization` filled in."""
        default = DEFAULT_TOLERANCES[quantization]
        return Tolerance(
            max_error=default.max_error if self.max_error is None else self.max_error,
            min_agreement=(
                default.min_agreement if self.min_agreement is None else self.min_agreement
            ),
            warn=self.warn,
        )


# fp16 keeps ~3 significant digits through a few layers; int8 costs about one more.
# Measured on small MLPs: fp16 max |dp| 2e-3..4e-3, int8 about 2e-2..4e-2.
DEFAULT_TOLERANCES: Dict[Optional[str], Tolerance] = {
    None: Tolerance(max_error=1e-2, min_agreement=0.99),
    "int8": Tolerance(max_error=1e-1, min_agreement=0.95),
}


@dataclass(frozen=True)
class Accuracy:
    """Simulator versus estimator on `n_samples` rows, worst case over `batch_sizes`."""

    n_samples: int
    sample: str
    batch_sizes: Tuple[int, ...]
    outputs: str
    max_abs_error: float
    max_error: float
    label_agreement: Optional[float]
    tolerance: Tolerance

    @property
    def passed(self) -> bool:
        """Within the tolerance (a regressor has no labels, so only its error counts)."""
        return self.max_error <= self.tolerance.max_error and (
            self.label_agreement is None or self.label_agreement >= self.tolerance.min_agreement
        )

    def summary(self) -> str:
        kind = "max |dp|" if self.outputs == "probabilities" else "max rel. error"
        labels = (
            ""
            if self.label_agreement is None
            else f", labels agree {self.label_agreement:.1%} "
            f"(>= {self.tolerance.min_agreement:.0%})"
        )
        return (
            f"{kind} {self.max_error:.2e} (<= {self.tolerance.max_error:g}){labels} on "
            f"{self.n_samples} rows ({self.sample}), batch sizes "
            f"{', '.join(map(str, self.batch_sizes))}"
        )

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data["batch_sizes"] = list(self.batch_sizes)
        data["tolerance"] = {
            "max_error": self.tolerance.max_error,
            "min_agreement": self.tolerance.min_agreement,
        }
        data["passed"] = self.passed
        return data


def labels_agree(estimator: Any, spec: OutputSpec, x: np.ndarray, outputs: np.ndarray) -> float:
    """Fraction of rows where labels read from `outputs` equal `estimator.predict(x)`.

    `spec` is what the outputs mean (the lowered estimator's); a multilabel row agrees when
    every label does.
    """
    expected = np.asarray(estimator.predict(x))
    if spec.task == "multilabel":
        threshold = 0.5 if spec.outputs == "probabilities" else 0.0
        got = (outputs > threshold).astype(expected.dtype)
        return float(np.mean(np.all(got == expected.reshape(got.shape), axis=1)))
    got = np.asarray(estimator.classes_)[np.argmax(outputs, axis=1)]
    return float(np.mean(got == expected))


def run_in_batches(
    run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch_size: int
) -> np.ndarray:
    """`run` over `x` in chunks of exactly `batch_size` rows (the tail padded), concatenated."""
    chunks = []
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        n = len(chunk)
        if n < batch_size:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - n, axis=0)])
        chunks.append(np.asarray(run(np.ascontiguousarray(chunk))).reshape(batch_size, -1)[:n])
    return np.concatenate(chunks)


def measure(
    run: Callable[[np.ndarray], np.ndarray],
    estimator: Any,
    spec: OutputSpec,
    x: np.ndarray,
    *,
    batch_sizes: Sequence[int],
    tolerance: Tolerance,
    sample: str,
    on_batch: Callable[[int], None] = lambda batch: None,
) -> Accuracy:
    """Run `x` through `run` at every batch size and compare with the estimator.

    `run` takes a float32 (batch, features) array and returns the model's output;
    `tolerance` must be resolved (no None fields).
    """
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    # The estimator sees exactly the float32 values the NPU sees.
    x_ref = x32.astype(np.float64)
    outputs = spec.outputs
    ref = reference_values(estimator, outputs, x_ref)
    scale = 1.0 if outputs == "probabilities" else max(float(np.max(np.abs(ref))), 1e-12)
    regressor = spec.task == "regressor"
    worst_abs, worst_agreement = 0.0, None if regressor else 1.0
    for batch in sorted(batch_sizes):
        got = run_in_batches(run, x32, batch).astype(np.float64)
        if got.shape != ref.shape:
            raise VerificationError(
                f"the converted model outputs shape {got.shape[1:]} per row at batch {batch}, "
                f"the estimator {ref.shape[1:]}: the graph does not match the estimator"
            )
        worst_abs = max(worst_abs, float(np.max(np.abs(got - ref))) if got.size else 0.0)
        if worst_agreement is not None:
            agreement = labels_agree(estimator, spec, x_ref, got)
            worst_agreement = min(worst_agreement, agreement)
        on_batch(batch)
    return Accuracy(
        n_samples=len(x32),
        sample=sample,
        batch_sizes=tuple(sorted(batch_sizes)),
        outputs=outputs,
        max_abs_error=worst_abs,
        max_error=worst_abs / scale,
        label_agreement=worst_agreement,
        tolerance=tolerance,
    )


def enforce(accuracy: Accuracy, quantization: Optional[str]) -> None:
    """Raise VerificationError (or warn, if the tolerance says so) when `accuracy` fails."""
    if accuracy.passed:
        return
    precision = "int8" if quantization == "int8" else "fp16"
    message = (
        f"the {precision} model on the simulator differs from the estimator: "
        f"{accuracy.summary()}. Check the inputs are in the range the model was trained on"
        + (
            "; for int8, calibrate with more representative rows (dataset=) or build fp16"
            if quantization == "int8"
            else ""
        )
        + "; to accept it, loosen the tolerance (verify=Tolerance(...)) or warn only "
        "(Tolerance(warn=True))."
    )
    if accuracy.tolerance.warn:
        warnings.warn(message, VerificationWarning, stacklevel=3)
    else:
        raise VerificationError(message, accuracy)


def default_sample(
    estimator: Any, n_features: int, n_rows: int = 256, seed: int = 0
) -> Tuple[np.ndarray, str]:
    """Rows to verify on when the caller gave none, and where they come from.

    A fitted scaler at the head of a Pipeline knows the training data's range; otherwise
    scikit-learn keeps no trace of it, and standard-normal rows are the honest fallback.
    """
    rng = np.random.default_rng(seed)
    first = estimator.steps[0][1] if hasattr(estimator, "steps") else estimator
    name = type(first).__name__
    if hasattr(first, "data_min_") and hasattr(first, "data_max_"):
        return rng.uniform(first.data_min_, first.data_max_, (n_rows, n_features)), (
            f"uniform within {name}'s fitted range"
        )
    if hasattr(first, "max_abs_") and name == "MaxAbsScaler":
        return rng.uniform(-first.max_abs_, first.max_abs_, (n_rows, n_features)), (
            f"uniform within {name}'s fitted range"
        )
    if getattr(first, "mean_", None) is not None and getattr(first, "scale_", None) is not None:
        return rng.normal(first.mean_, first.scale_, (n_rows, n_features)), (
            f"normal with {name}'s fitted mean and scale"
        )
    return rng.standard_normal((n_rows, n_features)), "standard normal (no fitted range known)"
