"""emit.to_onnx writes the same bytes in every process, whatever the string hash seed.

Bytes compared within one process cannot see an order that depends on PYTHONHASHSEED (a set
of initializer names, say): each process draws its own seed, so a .rknn built from it would
differ between two conversions of the same estimator.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Several layers: a hash-ordered collection of their 8 initializer names would come out in
# another order for another seed (the chance that two seeds agree is far below 1 %).
CONVERT = """
import hashlib, sys, warnings
import numpy as np
from sklearn.neural_network import MLPClassifier
import emit

rng = np.random.default_rng(0)
X = rng.normal(size=(40, 6))
y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    clf = MLPClassifier(hidden_layer_sizes=(7, 5, 4), max_iter=20, random_state=0).fit(X, y)
sys.stdout.write(hashlib.sha256(emit.to_onnx(clf, batch_size=2).SerializeToString()).hexdigest())
"""


def _digest_in_subprocess(hash_seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    proc = subprocess.run([sys.executable, "-c", CONVERT], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_onnx_bytes_do_not_depend_on_the_hash_seed() -> None:
    digests = {seed: _digest_in_subprocess(seed) for seed in ("1", "2")}
    assert len(digests["1"]) == 64
    assert digests["1"] == digests["2"], digests
    # ... and this process (with a seed of its own) agrees.
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(CONVERT, {})
    assert buffer.getvalue() == digests["1"]
