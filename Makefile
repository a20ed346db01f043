# tickercast: `make demo` runs the whole pipeline on the embedded sample; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= data
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install java demo test test-fast lint typecheck format clean k8s-up k8s-down

help:  ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

java:  ## Check that Java 17+ is installed (Spark needs it)
	@command -v java >/dev/null 2>&1 || { \
	  echo "error: Java 17 is required by Spark and was not found on PATH."; \
	  echo "  Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless"; \
	  echo "  macOS:         brew install openjdk@17"; exit 1; }
	@v=$$(java -version 2>&1 | awk -F'"' '/version/ {print $$2}' | cut -d. -f1); \
	if [ "$$v" -lt 17 ] 2>/dev/null; then \
	  echo "error: Java $$v found; Spark needs Java 17 or newer (apt-get install openjdk-17-jre-headless)."; exit 1; fi

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11."; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# The CPU build of torch first: a looser spec would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[all,dev]"
	@touch $@

install: java $(STAMP)  ## Create .venv and install tickercast with every extra (fast when nothing changed)

demo: install  ## Run the whole pipeline on the embedded real sample and serve the API
	$(BIN)/tickercast pipeline run --data $(DATA) --source sample --serve

test: lint typecheck  ## Lint, type-check and run every test (unit, Spark, DDP, serving, browser, Helm)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: lint typecheck  ## The quick lane: every test but Spark, DDP, browser and Helm ones
	$(BIN)/python -m pytest -m "not spark and not distributed and not browser and not deploy" $(PYTEST_ARGS)

typecheck: install  ## Type-check src/ with mypy (settings in pyproject.toml)
	$(BIN)/mypy

lint: install  ## Lint and check formatting
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: install  ## Fix lint and formatting
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

k8s-up:  ## Deploy to Minikube (needs minikube, docker, helm)
	bash deploy/minikube/up.sh

k8s-down:  ## Remove the Minikube deployment
	bash deploy/minikube/down.sh

clean:  ## Remove generated output (keeps .venv)
	rm -rf $(DATA) lightning_logs spark-warehouse
