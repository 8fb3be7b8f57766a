# Every target that needs the environment depends on the stamp, so `make test` and `make demo`
# set themselves up on a fresh machine and again whenever pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PIP := $(BIN)/pip --disable-pip-version-check -q
# Debian packages the tests use: biosig-tools (save2gdf), an independent decoder of SCP-ECG, EDF
# and DICOM that the reader tests compare against (never used at run time); headless Chromium and
# its driver, which the review page's tests drive (nothing is downloaded at run time)
APT_PACKAGES := biosig-tools chromium chromium-driver
APT := $(if $(filter 0,$(shell id -u)),apt-get,sudo apt-get)

.PHONY: setup test test-all demo bench lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	command -v save2gdf >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { $(APT) update -qq && \
		DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq --no-install-recommends $(APT_PACKAGES); }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0 2>$(VENV)/pip.log || { cat $(VENV)/pip.log; exit 1; }
	$(PIP) install -e '.[dev]' 2>$(VENV)/pip.log || { cat $(VENV)/pip.log; exit 1; }
	$(BIN)/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	$(BIN)/pip check
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest

test-all: setup
	$(BIN)/python -m pytest -m ""

demo: setup
	$(BIN)/msaic demo

bench: setup
	for b in bench/[!_]*.py; do $(BIN)/python $$b || exit 1; done

# ruff; the layer contract of pyproject.toml (import-linter); no copy-pasted logic outside tests
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/pylint --disable=all --enable=duplicate-code --score=n flows tasks msaic_model data_contracts

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
