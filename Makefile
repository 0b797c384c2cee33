# S3E: `make run` and `make test` are the two entry points the README promises.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO := var/demo

.PHONY: install run test lint format models clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[train,test]'
	touch $(STAMP)

install: $(STAMP)

# The daemon on its built-in defaults: shipped chest-int8 bundle, ./inbox watched, data in
# ./var/s3e, search on http://127.0.0.1:8080. On the first run, 24 generated chest phantoms
# are dropped into ./inbox so there is something to search for.
run: $(STAMP)
	@if [ ! -d inbox ] && [ ! -d var/s3e ]; then \
	  $(BIN)/s3e-train make-data --domain chest --n 24 --seed 4242 --out $(DEMO)/chest >/dev/null && \
	  mkdir -p inbox && cp $(DEMO)/chest/images/*.png inbox/ && \
	  echo "24 synthetic chest phantoms copied into ./inbox"; fi
	$(BIN)/s3e-edge run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# pytest exits 5 when it collects no test: that is a failure here, said plainly.
test: lint
	@$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; fi; exit $$rc

# Retrain the shipped models from scratch (about 40 minutes per domain on 2 CPU cores).
models: $(STAMP)
	$(BIN)/s3e-train reproduce --domain shapes --out models/shapes
	$(BIN)/s3e-train reproduce --domain chest --out models/chest

clean:
	rm -rf $(VENV) var inbox .pytest_cache .ruff_cache
