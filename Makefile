# Two commands for users: `make demo` and `make test`. Both create .venv when it is
# missing and reinstall only when pyproject.toml or this Makefile changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.rkrt-installed

# The wheel a user installs (`make wheel`; on a board: `pip install dist/rkrt-*.whl`).
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
WHEEL := dist/rkrt-$(VERSION)-py3-none-any.whl
PACKAGE_FILES := pyproject.toml MANIFEST.in $(shell find rkrt/ emit/ native_headers/ -type f \
	\( -name '*.py' -o -name '*.h' -o -name py.typed \) -not -path '*/__pycache__/*')

# The numpy-2 lane: rkrt must work with numpy 1.x and 2.x, but rknn-toolkit2 pins numpy < 2,
# so the board-side tests also run in a second venv with numpy 2 and no converter stack. It
# tests what users install: the built wheel, not the source tree (RKRT_TEST_INSTALLED=1 makes
# tests/conftest.py refuse a source-tree import; pytest's own script, unlike `python -m
# pytest`, does not put the working directory on sys.path).
NP2_VENV := .venv-np2
NP2_PY := $(NP2_VENV)/bin/python
NP2_STAMP := $(NP2_VENV)/.rkrt-installed
NP2_WHEEL_STAMP := $(NP2_VENV)/.rkrt-wheel
# What the board-side tests import besides rkrt; onnx and tqdm only because
# tests/test_rkrt/test_matmul_mlp.py exports its weights with emit (whose package imports them).
NP2_DEPS := 'numpy>=2' pytest hypothesis psutil pandas scikit-learn onnx tqdm
# Host-only tests, left out of this lane: the converter and its CLI (emit, skops, the
# toolkit), the demo (toolkit) and the benchmark harness. A toolkit test anywhere else would
# stop this lane under CI=true (tests/conftest.py): move it to a host-only file. The atheris
# fuzzers feed JSON text to the metadata parser, where numpy plays no part: the main lane
# runs them (and scripts/reliability_full.py's smoke test, which fuzzes too), the hypothesis
# fuzzer in the same file runs here. scripts/leakcheck.sh, the AddressSanitizer run, imports
# rkrt from the clone, not the wheel, as scripts/mutate.py does: the main lane runs both. A
# numpy deprecation raised from rkrt's own code fails the lane, so the next removal shows up
# here before on a board.
NP2_PYTEST_ARGS := --ignore=tests/test_emit --ignore=tests/test_examples/test_demo.py \
	--ignore=tests/test_project/test_packaging.py \
	--ignore=tests/test_bench/test_bench_run_all.py \
	--ignore=tests/test_bench/test_bench_to_onnx_speed.py \
	--ignore=tests/test_rkrt/test_reliability_full_script.py \
	--ignore=tests/test_rkrt/test_leakcheck_script.py \
	--ignore=tests/test_project/test_mutants.py \
	--deselect tests/test_rkrt/test_fuzz_metadata.py::test_atheris_finds_no_crash_in_a_fixed_number_of_runs \
	--deselect tests/test_rkrt/test_fuzz_metadata.py::test_fuzz_target_accepts_hostile_inputs_and_reports_foreign_exceptions \
	-o 'filterwarnings=error::DeprecationWarning:rkrt'

# The scikit-learn floor lane: users convert in their own training environment, so emit's
# converters are tested against the oldest scikit-learn the `host` extra allows, not only the
# newest the main lane installs (settings newer than the floor skip there, saying which).
SKL_FLOOR := 1.6.1
SKL_VENV := .venv-sklearn-floor
SKL_PY := $(SKL_VENV)/bin/python
SKL_STAMP := $(SKL_VENV)/.rkrt-installed
SKL_DEPS := 'scikit-learn==$(SKL_FLOOR)' numpy==1.26.4 onnx==1.18.0 onnxruntime==1.26.0 \
	protobuf==4.25.4 pandas pytest hypothesis psutil cffi tqdm
SKL_TESTS := tests/test_emit/test_emit_onnx.py tests/test_emit/test_emit_onnx_checks.py \
	tests/test_emit/test_emit_onnx_determinism.py tests/test_emit/test_emit_properties.py \
	tests/test_emit/test_emit_columns.py

.PHONY: demo test test-numpy2 test-sklearn-floor lint bench wheel clean

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
	$(NP2_PY) -m pip --disable-pip-version-check install -q $(NP2_DEPS)
	touch $(NP2_STAMP)

$(SKL_STAMP): pyproject.toml Makefile
	test -x $(SKL_PY) || $(PYTHON) -m venv $(SKL_VENV)
	echo '*' > $(SKL_VENV)/.gitignore
	$(SKL_PY) -m pip --disable-pip-version-check install -q $(SKL_DEPS)
	touch $(SKL_STAMP)

$(NP2_WHEEL_STAMP): $(NP2_STAMP) $(WHEEL)
	# as a user installs it: the wheel with the dependencies it declares (cffi; numpy 2 is kept)
	$(NP2_PY) -m pip --disable-pip-version-check uninstall -q -y rkrt
	$(NP2_PY) -m pip --disable-pip-version-check install -q $(WHEEL)
	touch $(NP2_WHEEL_STAMP)

# Built from a clean state: setuptools would otherwise reuse build/ and ship stale modules.
$(WHEEL): $(PACKAGE_FILES)
	rm -rf build rkrt.egg-info dist/rkrt-*.whl
	$(PYTHON) -m pip --disable-pip-version-check wheel -q --no-deps -w dist .
	rm -rf build rkrt.egg-info
	@echo "built $(WHEEL): copy it to the board and run 'pip install $(notdir $(WHEEL))'"

wheel: $(WHEEL)

demo: $(STAMP)
	$(PY) examples/demo.py

lint: $(STAMP)
	$(VENV)/bin/ruff check rkrt emit tests bench examples scripts
	$(VENV)/bin/ruff format --check rkrt emit tests bench examples scripts
	# the board-side package runs on old board images: the floor pyproject states, checked
	$(VENV)/bin/vermin --target=3.9- --no-tips --eval-annotations --violations -q rkrt

test: $(STAMP) lint
	# the peer bench/streaming.py compares with, into .cache once (never a dependency of
	# rkrt), so that the comparison's smoke test runs instead of skipping
	$(PY) bench/peer.py
	$(PY) -m pytest
	$(MAKE) --no-print-directory test-numpy2
	$(MAKE) --no-print-directory test-sklearn-floor

test-numpy2: $(NP2_WHEEL_STAMP)
	$(NP2_PY) -c "import numpy, sys; print('numpy-2 lane: numpy', numpy.__version__); \
	sys.exit(numpy.__version__.startswith('1.'))"
	RKRT_TEST_INSTALLED=1 $(NP2_VENV)/bin/pytest $(NP2_PYTEST_ARGS)

test-sklearn-floor: $(SKL_STAMP)
	$(SKL_PY) -c "import sklearn, sys; print('scikit-learn floor lane:', sklearn.__version__); \
	sys.exit(sklearn.__version__ != '$(SKL_FLOOR)')"
	$(SKL_PY) -m pytest $(SKL_TESTS)

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) $(NP2_VENV) $(SKL_VENV) .cache build dist rkrt.egg-info
