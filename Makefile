# The two commands a new user types: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
CKSUM  := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# The runtime (what `make demo` needs) and the test/bench extras are installed separately.
RUN_STAMP := $(VENV)/.installed-run-$(CKSUM)
DEV_STAMP := $(VENV)/.installed-dev-$(CKSUM)
# A second venv with the package and no extras: proves a plain install runs every method.
PLAIN       := .venv-plain
PLAIN_PY    := $(PLAIN)/bin/python
PLAIN_STAMP := $(PLAIN)/.installed-$(CKSUM)

# A third venv for the peer methods whose own packages we never import (CAREamics): the
# benchmark runs benchmarks/peers/careamics_runner.py with its python in a subprocess.
PEERS       := .venv-peers
PEERS_PY    := $(PEERS)/bin/python
CAREAMICS_VERSION ?= 0.3.5
PEERS_STAMP := $(PEERS)/.installed-careamics-$(CAREAMICS_VERSION)

.PHONY: demo test plain-check lint bench install clean screenshots peers-env

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch==2.13.0 first (local CPU wheel) so the package's `torch>=2.2` never pulls the CUDA build.
$(RUN_STAMP): $(PY) pyproject.toml
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e .
	rm -f $(VENV)/.installed-run-*
	touch $(RUN_STAMP)

# The optional extras the tests exercise (bmz, napari, distributed) are installed too, so CI
# runs them.
$(DEV_STAMP): $(RUN_STAMP)
	$(PIP) install -q -e '.[test,bench,bmz,napari,napari-test,distributed]'
	rm -f $(VENV)/.installed-dev-*
	touch $(DEV_STAMP)

$(PLAIN_PY):
	$(PYTHON) -m venv $(PLAIN)

$(PLAIN_STAMP): $(PLAIN_PY) pyproject.toml
	$(PLAIN_PY) -m pip install -q --upgrade pip
	$(PLAIN_PY) -m pip install -q torch==2.13.0
	$(PLAIN_PY) -m pip install -q .
	rm -f $(PLAIN)/.installed-*
	touch $(PLAIN_STAMP)

$(PEERS_PY):
	$(PYTHON) -m venv $(PEERS)

# torch==2.13.0 first (local CPU wheel). careamics 0.3.5 pins torchvision<=0.26 (torch<=2.11,
# which would pull the CUDA build), and the registry's torchvision wheels cannot load beside
# the CPU torch; careamics' N2V path never calls torchvision, so an import-only stand-in
# (benchmarks/peers/torchvision_stub) is installed, then careamics' other requirements and
# careamics itself without dependencies.
PEERS_REQ := benchmarks/peers/requirements-careamics.txt
$(PEERS_STAMP): $(PEERS_PY) $(PEERS_REQ)
	$(PEERS_PY) -m pip install -q --upgrade pip
	$(PEERS_PY) -m pip install -q torch==2.13.0
	$(PEERS_PY) -m pip install -q ./benchmarks/peers/torchvision_stub
	$(PEERS_PY) -m pip install -q -r $(PEERS_REQ)
	$(PEERS_PY) -m pip install -q --no-deps careamics==$(CAREAMICS_VERSION)
	rm -f $(PEERS)/.installed-*
	touch $(PEERS_STAMP)

# Says in one line whether CAREamics imports; a failure leaves the benchmark's CAREamics
# row "not run" with that line, and every other row is still measured.
peers-env: $(PEERS_STAMP)
	-$(PEERS_PY) benchmarks/peers/careamics_runner.py --check

install: $(DEV_STAMP)

demo: $(RUN_STAMP)
	$(VENV)/bin/n2v-cascade demo --output demo-output --overwrite

test: $(DEV_STAMP)
	$(PY) -m pytest
	$(MAKE) --no-print-directory plain-check

# Reinstalls the current source (a wheel, no extras, no dependency changes) and runs
# every method the README shows with it.
plain-check: $(PLAIN_STAMP)
	$(PLAIN_PY) -m pip install -q --no-deps --force-reinstall .
	$(PLAIN_PY) tests/plain_install.py

lint: $(DEV_STAMP)
	$(PY) -m ruff check src tests benchmarks

bench: $(DEV_STAMP) $(PEERS_STAMP)
	$(PY) -m benchmarks.run --suite quick

# docs/napari-*.png: the plugin in a real napari window (needs Xvfb and Qt's X11 libraries:
# apt-get install xvfb libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0)
screenshots: $(DEV_STAMP)
	N2V_SCREENSHOTS=1 QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" \
		$(PY) -m pytest -q tests/test_napari_screenshots.py

clean:
	rm -rf $(VENV) $(PLAIN) $(PEERS) demo-output build *.egg-info src/*.egg-info
