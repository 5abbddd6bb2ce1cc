"""Coverage-guided fuzz target (atheris) for rkrt's sidecar / custom-string parser.

    python scripts/fuzz_metadata.py -max_total_time=60 CORPUS_DIR [more libFuzzer flags]

Each input is parsed as a sidecar (bytes), as a custom string (text) and as a scirknn sidecar.
Only MetadataError (a ValueError) may escape the parser; anything else is a crash that
libFuzzer reports with the input that caused it. What parses must survive a round trip.
`write_seeds(directory)` fills a corpus with valid documents to start from; `fuzz(directory,
*flags)` runs this target on them in a subprocess (libFuzzer ends its process) and returns the
number of executions, or raises `FuzzCrash` with the traceback and the input.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import atheris
import numpy as np

with atheris.instrument_imports(include=["rkrt.metadata", "rkrt.preparation"]):
    from rkrt.metadata import (
        PREPARATION_IN_SIDECAR,
        Branch,
        MetadataError,
        ModelMetadata,
        OneHot,
        Preparation,
        Select,
    )

SEEDS = [
    ModelMetadata(task="classifier", outputs="probabilities", n_features_in=4,
                  classes=("setosa", "versicolor", "virginica"), batch_sizes=(1, 8),
                  feature_names_in=("a", "b", "c", "d"), estimator="MLPClassifier",
                  versions={"sklearn": "1.9"}, verification={"max_abs_diff": 0.01},
                  sha256="0" * 64, target_platform="rk3588"),
    ModelMetadata(task="multilabel", outputs="decision", n_features_in=2, classes=(0, 1, 2),
                  quantization="int8"),
    ModelMetadata(task="regressor", outputs="values", n_features_in=3),
    ModelMetadata(task="regressor", outputs="values", n_features_in=3, preparation=Preparation(
        n_features_in=2, feature_names_in=None, steps=(Select(2, (Branch((1,), ()), Branch(
            (0,), (OneHot((np.array(["a", None], dtype=object),), ((0, 1),), (-1,), 2),)))),))),
]  # fmt: skip
SCIRKNN = {"input_shape": [None, 4], "output_shape": [1, 3], "classes": [0, 1, 2],
           "mode": "classifier"}  # fmt: skip


def write_seeds(directory: Path) -> None:
    """Valid sidecars, custom strings and a scirknn sidecar, one file each."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, meta in enumerate(SEEDS):
        (directory / f"sidecar{i}.json").write_text(meta.to_json())
        (directory / f"custom{i}.json").write_text(meta.to_custom_string())
    (directory / "scirknn.json").write_text(json.dumps(SCIRKNN))


def write_dictionary(path: Path) -> None:
    """libFuzzer dictionary: the schema's keys and values, so mutations stay JSON-shaped."""
    words = ["format", "rkrt-model", "schema_version", "task", "outputs", "classes",
             "n_features_in", "batch_sizes", "quantization", "verification", "versions",
             "feature_names_in", "estimator", "target_platform", "sha256", "classifier",
             "multilabel", "regressor", "probabilities", "decision", "values", "int8",
             "input_shape", "output_shape", "mode"]  # fmt: skip
    tokens = [json.dumps(json.dumps(w)) for w in words]
    tokens += ['"null"', '"true"', '"1e400"', '"-0"', '"[]"', '"{}"']
    path.write_text("\n".join(tokens) + "\n")


class FuzzCrash(AssertionError):
    """The fuzzer found an input on which something other than MetadataError escaped."""


def fuzz(directory: Path, *flags: str, timeout: float | None = None) -> int:
    """Run this target from fresh seeds in `directory`; return how many inputs it executed."""
    corpus, dictionary = directory / "corpus", directory / "metadata.dict"
    write_seeds(corpus)
    write_dictionary(dictionary)
    result = subprocess.run(
        [sys.executable, __file__, *flags, f"-dict={dictionary}", f"-artifact_prefix={directory}/",
         "-print_final_stats=1", str(corpus)],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    crashes = sorted(directory.glob("crash-*"))
    if result.returncode != 0 or crashes:
        # atheris prints the Python traceback on stdout, libFuzzer its log on stderr
        found = "".join(f"\n--- {c.name}:\n{c.read_bytes()[:2000]!r}" for c in crashes)
        raise FuzzCrash(
            f"exit code {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-1500:]}"
            f"{found}"
        )
    return int(re.search(r"Done (\d+) runs", result.stderr).group(1))


def check(text: str | bytes, parse) -> None:
    try:
        meta = parse(text)
    except MetadataError:
        return
    # Whatever was accepted is valid metadata: it writes and reads back unchanged.
    assert ModelMetadata.from_json(meta.to_json()) == meta
    try:
        short = meta.to_custom_string()
    except MetadataError:
        return
    assert len(short.encode("utf-8")) <= 1023
    if json.loads(short).get("preparation") == PREPARATION_IN_SIDECAR:
        return  # too long for the custom string: reading it asks for the sidecar, by design
    ModelMetadata.from_custom_string(short)


def one_input(data: bytes) -> None:
    check(data, ModelMetadata.from_json)
    text = data.decode("utf-8", "replace")
    check(text, ModelMetadata.from_custom_string)


def main(argv: list[str]) -> None:
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
