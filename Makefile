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

# Until the daemon lands: evaluate the shipped models of both domains on a fresh generated split
# (seeds never used in training) and print their metrics against the minimums.
run: $(STAMP)
	@for d in chest shapes; do \
	  [ -d $(DEMO)/$$d ] || $(BIN)/s3e-train make-data --domain $$d --n 300 --seed 4242 --out $(DEMO)/$$d || exit 1; \
	  $(BIN)/s3e-train eval --models models/$$d --data $(DEMO)/$$d --json $(DEMO)/$$d-eval.json || exit 1; \
	done

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
	rm -rf $(VENV) var .pytest_cache .ruff_cache
