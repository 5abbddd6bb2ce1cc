# Two commands for users: `make demo` and `make test`. Both create .venv when it is
# missing and reinstall only when pyproject.toml or this Makefile changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.rkrt-installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# rknn-toolkit2 declares torch<=2.4 (a CUDA build of several GB); install it without
	# its declared dependencies and provide the ones that work (the `host` extra).
	$(PIP) install -q --no-deps rknn-toolkit2==2.5.0
	$(PIP) install -q -e '.[host,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

lint: $(STAMP)
	$(VENV)/bin/ruff check rkrt emit tests bench examples

test: $(STAMP) lint
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .cache
