# Two set-up commands that work on a fresh machine (Python >= 3.10 with venv):
#   make demo   - the whole pipeline on built-in SYNTHETIC radiographs (no download, a few minutes on 2 cores)
#   make test   - the test suite (fast + slow + real-data tests when ../shared exists)
# Both create .venv and install everything into it from requirements.txt / pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: venv demo test test-fast clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

demo: venv
	$(BIN)/fracture-edge demo

test: venv
	$(BIN)/python -m pytest

test-fast: venv
	$(BIN)/python -m pytest -m "not slow and not android"

clean:
	rm -rf $(VENV) runs/demo .pytest_cache
