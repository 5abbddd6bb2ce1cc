#!/usr/bin/env bash
# Run a short rkrt workload on an ASan/LSan build of the test double librknnrt.so.
#
#   scripts/leakcheck.sh            # the workload: must report no error and no leak
#
# The double is built with -fsanitize=address (build_library(cflags=...)) and libasan is
# preloaded into Python. The interpreter itself leaks a little at exit by design, so leak
# reports are attributed: only those with a frame in librknnrt.so count. The double keeps its
# live contexts/mems in global tables (reachable, so invisible to LSan): those are checked by
# its own live counters at the end of the workload instead.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
LIBASAN=$(gcc -print-file-name=libasan.so)
OUT=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$OUT"' EXIT

SO=$("$PY" - <<'EOF'
import sys
sys.path.insert(0, "tests")
from fake_rknnrt import build_library
print(build_library(cflags=("-fsanitize=address", "-fno-omit-frame-pointer", "-g")))
EOF
)

workload() {
    LD_PRELOAD="$LIBASAN" RKRT_LIBRARY="$SO" \
    ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:log_path=$OUT/$1" \
    "$PY" - "$1" <<'EOF'
import sys
sys.path.insert(0, "tests")
import numpy as np
from rkrt_support import inputs_for, mlp
import rkrt
from rkrt.library import load

model = mlp((8, 32, 4), dtype="float16", batch_sizes=(1, 4))
x = inputs_for(model)[0]
with rkrt.Pool(model.to_bytes(), soc="rk3588") as pool:
    for _ in range(2000):
        pool.run(x)
        pool.run(inputs_for(model, 4)[0])
for i in range(200):
    with rkrt.Session(model.to_bytes()) as s:
        if i % 2:
            s.run(x, out=[np.empty((1, 4), np.float32)])
        else:
            with s.bind() as b:
                b.set_input_shapes((4, 8))
                b.run()
for bad in (b"", b"RKFAKE\0\1" + b"\0" * 40, model.to_bytes()[:-3]):
    try:
        rkrt.Session(bad)
    except (ValueError, rkrt.RKNNError):
        pass
from fake_rknnrt import FakeRuntime
live = FakeRuntime(load().path).live()
assert live == {"contexts": 0, "mems": 0, "outputs": 0}, live
print("workload done, nothing live in the double:", live)
EOF
}

attributed() {  # leak reports with a frame in the test double
    { cat "$OUT/$1".* 2>/dev/null || true; } |
        awk '/^(Direct|Indirect) leak/{r=$0} /librknnrt.so/{if (r) {print r; r=""}}'
}

workload clean > "$OUT/stdout" || true  # LSan exits non-zero for the interpreter's leaks
cat "$OUT/stdout"
errors=$(grep -l "ERROR: AddressSanitizer" "$OUT"/clean.* 2>/dev/null || true)
leaks=$(attributed clean)

total=$({ cat "$OUT"/clean.* 2>/dev/null || true; } | grep -cE "^(Direct|Indirect) leak" || true)
echo "ASan errors: ${errors:-none}"
[ -z "$errors" ] || grep -h -A20 "ERROR: AddressSanitizer" $errors | head -40
echo "leaks in the double: ${leaks:-none} (interpreter-only leak reports ignored: $total)"
grep -q "nothing live" "$OUT/stdout"
[ -z "$errors" ] && [ -z "$leaks" ]
