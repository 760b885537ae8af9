# The two commands a new user types: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint bench install clean screenshots

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch==2.13.0 first (local CPU wheel) so the package's `torch>=2.2` never pulls the CUDA build.
# The optional extras the tests exercise (bmz, napari) are installed too, so CI runs their tests.
$(STAMP): $(PY) pyproject.toml
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test,bench,bmz,napari,napari-test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/n2v-cascade demo --output demo-output --overwrite

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks

bench: $(STAMP)
	$(PY) -m benchmarks.run --suite quick

# docs/napari-*.png: the plugin in a real napari window (needs Xvfb and Qt's X11 libraries:
# apt-get install xvfb libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0)
screenshots: $(STAMP)
	N2V_SCREENSHOTS=1 QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" \
		$(PY) -m pytest -q tests/test_napari_screenshots.py

clean:
	rm -rf $(VENV) demo-output build *.egg-info src/*.egg-info
