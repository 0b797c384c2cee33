# S3E: `make run` and `make test` are the two entry points the README promises.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEVICE := $(VENV)/.device-stamp
FULL := $(VENV)/.full-stamp
DEMO := var/demo

.PHONY: install run test test-fast lint format models system-deps clean

# The device side alone (no TensorFlow): what `make run` needs. PYTHONWARNINGS=ignore keeps
# setuptools' notes on editable installs (meant for setuptools' users) off a first run's screen.
PIP := PYTHONWARNINGS=ignore $(BIN)/pip install --quiet --disable-pip-version-check
$(DEVICE): pyproject.toml
	@[ -d $(VENV) ] || echo "first start: creating $(VENV) and installing the device side (about a minute)"
	@$(PYTHON) -m venv $(VENV)
	@$(PIP) --upgrade pip
	@$(PIP) -e .
	@touch $@

# Training, conversion and the test tools on top (TensorFlow included).
$(FULL): pyproject.toml $(DEVICE)
	@echo "installing training, conversion and the test tools (TensorFlow included: a few minutes)"
	@$(PIP) -e '.[train,test,fleet]'
	@touch $@

install: $(FULL)

# The daemon on its built-in defaults: shipped chest-int8 bundle, with photos-int8 for every
# image that is no radiograph, ./inbox watched, data in ./var/s3e, search on
# http://127.0.0.1:8080. On the first run, 24 generated chest phantoms and scikit-image's real
# photographs (fetched from PyPI into the asset cache; skipped offline) are dropped into ./inbox
# so there is something to search for; drop your own photographs beside them.
run: $(DEVICE)
	@if [ ! -d inbox ] && [ ! -d var/s3e ]; then \
	  $(BIN)/s3e-train make-data --domain chest --n 24 --seed 4242 --out $(DEMO)/chest >/dev/null && \
	  mkdir -p inbox && cp $(DEMO)/chest/images/*.png inbox/ && \
	  echo "24 synthetic chest phantoms copied into ./inbox" && \
	  echo "fetching scikit-image's real photographs from PyPI (a 14 MB wheel, once)" && \
	  { $(BIN)/s3e-train assets skimage_photos --copy-to inbox 2>/dev/null && \
	    echo "scikit-image's real photographs copied into ./inbox (try: cat, coffee, person)" || \
	    echo "could not fetch the demo photographs (offline?): drop your own into ./inbox"; }; fi
	@$(BIN)/s3e-edge run $(ARGS)

system-deps:
	@scripts/system-deps.sh

lint: $(FULL)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(FULL)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Everything: lint, types, the unit tier and the integration tier (real servers, daemons,
# Chromium, a few training steps), in TEST_WORKERS processes, a test file each at a time: the
# integration tier mostly waits on servers and daemons, so two workers overlap it with the
# training tests on 2 cores. pytest exits 5 when it collects no test: a failure here.
TEST_WORKERS ?= 2
test: system-deps lint
	@$(BIN)/python -m pytest tests -n $(TEST_WORKERS) --dist loadfile; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; fi; exit $$rc

# The edit-test loop: the unit tier only (no services, no daemon, no training).
test-fast: $(FULL)
	@$(BIN)/python -m pytest tests/unit; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; fi; exit $$rc

# Retrain the shipped models from scratch (see the model cards for the time per domain).
models: $(FULL)
	$(BIN)/s3e-train reproduce --domain shapes --out models/shapes
	$(BIN)/s3e-train reproduce --domain chest --out models/chest

clean:
	rm -rf $(VENV) var inbox .pytest_cache .ruff_cache
