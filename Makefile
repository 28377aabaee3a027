# Two set-up commands that work on a fresh machine (Python >= 3.10 with venv):
#   make demo   - the whole pipeline on built-in SYNTHETIC radiographs (no download, 11-13 min on a 2-core AVX2 CPU)
#   make test   - the test suite (fast + slow + real-data tests when ../shared exists)
# Both create .venv and install everything into it from requirements.txt / pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The legacy tflite-runtime 2.14 needs numpy<2, so it never shares .venv (TensorFlow 2.21 needs numpy>=2):
# its own venv lets `bench --worker-python tflite-runtime=...` (and its slow test) put its rows in the same table.
# Its wheels exist for CPython 3.8-3.11; with another $(PYTHON), pass TFLR_PYTHON=python3.11 (else the test skips).
TFLR_PYTHON ?= $(PYTHON)
TFLR_VENV ?= .venv-tflite-runtime

.PHONY: venv tflite-runtime-venv browser demo test test-fast clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

tflite-runtime-venv: $(TFLR_VENV)/.installed

$(TFLR_VENV)/.installed: pyproject.toml
	rm -rf $(TFLR_VENV)
	$(TFLR_PYTHON) -m venv $(TFLR_VENV)
	$(TFLR_VENV)/bin/python -m pip install --quiet "numpy<2" tflite-runtime pillow \
	  && $(TFLR_VENV)/bin/python -m pip install --quiet --no-deps -e . \
	  || echo "tflite-runtime could not be installed for $$($(TFLR_PYTHON) --version 2>&1)" > $(TFLR_VENV)/UNAVAILABLE
	touch $@

# The serve page's browser test (tests/test_serve_live.py) drives Debian's chromium with selenium; installed when
# missing and allowed (root with apt-get), otherwise that test skips with the reason.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	       && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 \
	       || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1; } \
	       || echo "chromium could not be installed here: the browser test will skip"; } || true

demo: venv
	$(BIN)/fracture-edge demo

# Two workers (the 2 cores: TensorFlow's converters are mostly single-threaded); the tiny run and the tiny export
# the export tests share are built once per session (tests/conftest.py: a file lock across the workers), and
# the tests that read the export are collected first, so they all start on one worker (conftest.py says why).
PYTEST_WORKERS ?= 2

test: venv tflite-runtime-venv browser
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS)

test-fast: venv
	$(BIN)/python -m pytest -m "not slow and not android"

clean:
	rm -rf $(VENV) $(TFLR_VENV) runs/demo .pytest_cache
