# Two commands for users: `make demo` and `make test`. Both create .venv when it is
# missing and reinstall only when pyproject.toml or this Makefile changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.rkrt-installed

# The numpy-2 lane: rkrt must work with numpy 1.x and 2.x, but rknn-toolkit2 pins numpy < 2,
# so the board-side tests also run in a second venv with numpy 2 and no converter stack.
NP2_VENV := .venv-np2
NP2_PY := $(NP2_VENV)/bin/python
NP2_STAMP := $(NP2_VENV)/.rkrt-installed
# What the board-side tests import besides rkrt; onnx and tqdm only because
# tests/test_matmul_mlp.py exports its weights with emit (whose package imports them).
NP2_DEPS := 'numpy>=2' pytest hypothesis psutil pandas scikit-learn onnx tqdm
# Host-only tests, left out of this lane: the converter and its CLI (emit, skops, the
# toolkit), the demo (toolkit) and the benchmark harness. A toolkit test anywhere else would
# stop this lane under CI=true (tests/conftest.py): move it to a host-only file. The atheris
# fuzzers feed JSON text to the metadata parser, where numpy plays no part: the main lane
# runs them, the hypothesis fuzzer in the same file runs here. A numpy deprecation raised
# from rkrt's own code fails the lane, so the next removal shows up here before on a board.
NP2_PYTEST_ARGS := --ignore-glob='tests/test_emit_*' --ignore=tests/test_demo.py \
	--ignore=tests/test_security.py --ignore=tests/test_bench_smoke.py \
	--deselect tests/test_fuzz_metadata.py::test_atheris_finds_no_crash_in_bounded_time \
	--deselect tests/test_fuzz_metadata.py::test_fuzz_target_accepts_hostile_inputs_and_reports_foreign_exceptions \
	-o 'filterwarnings=error::DeprecationWarning:rkrt'

.PHONY: demo test test-numpy2 lint bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# rknn-toolkit2 declares torch<=2.4 (a CUDA build of several GB); install it without
	# its declared dependencies and provide the ones that work (the `host` extra).
	$(PIP) install -q --no-deps rknn-toolkit2==2.5.0
	$(PIP) install -q -e '.[host,test]'
	touch $(STAMP)

$(NP2_STAMP): pyproject.toml Makefile
	test -x $(NP2_PY) || $(PYTHON) -m venv $(NP2_VENV)
	# keep git (and ruff, which follows .gitignore) out of it, as Python >= 3.13's venv does
	echo '*' > $(NP2_VENV)/.gitignore
	$(NP2_PY) -m pip --disable-pip-version-check install -q -e . $(NP2_DEPS)
	touch $(NP2_STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

lint: $(STAMP)
	$(VENV)/bin/ruff check rkrt emit tests bench examples scripts

test: $(STAMP) lint
	$(PY) -m pytest
	$(MAKE) --no-print-directory test-numpy2

test-numpy2: $(NP2_STAMP)
	$(NP2_PY) -c "import numpy, sys; print('numpy-2 lane: numpy', numpy.__version__); \
	sys.exit(numpy.__version__.startswith('1.'))"
	$(NP2_PY) -m pytest $(NP2_PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) $(NP2_VENV) .cache
