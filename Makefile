# make test: set up .venv from nothing (when missing) and run the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: test test-fast lint clean-venv

$(STAMP): setup.py requirements.txt requirements-test.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first; basicsr builds from source against it, so no build isolation (which would pull a second torch)
	$(PIP) install -q $$(grep -E '^(torch|torchvision)==' requirements.txt)
	$(PIP) install -q setuptools wheel
	$(PIP) install -q --no-build-isolation $$(grep -E '^basicsr==' requirements.txt)
	# the camera readers' libraries too: the tests read MRAW and CINE files
	$(PIP) install -q -e '.[test,cameras]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean-venv:
	rm -rf $(VENV)

# make demo: the whole pipeline on synthetic data (about 15 minutes on 2 CPU cores, more on a slower machine)
.PHONY: demo
demo: $(STAMP)
	$(PY) scripts/demo.py
