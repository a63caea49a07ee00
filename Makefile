# ZooServe. The README's two commands: `make serve` and `make test`. Both set up .venv themselves.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
STORE  ?= model_store
# The default model set `make serve` exports when missing (override: make serve MODELS="resnet50 vgg16").
MODELS ?= lenet5_digits resnet18 mobilenet_v2
# Pass pytest options: make test PYTEST_ARGS="-k digits -x"
PYTEST_ARGS ?=

.PHONY: install serve export export-all test lint format docs bench clean

install: $(STAMP)

# Idempotent: reinstalls only when pyproject.toml changes (or .venv is missing).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -e '.[cpu,export,test]'
	@touch $(STAMP)

export: install
	$(BIN)/python -m export build $(MODELS) --store $(STORE)

export-all: install
	$(BIN)/python -m export build --all --store $(STORE)

serve: export
	$(BIN)/python -m service --store $(STORE)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

docs: install
	$(BIN)/python -m export list --markdown docs/zoo.md --readme README.md

bench: install
	$(BIN)/python -m export build resnet50 --store $(STORE)
	$(BIN)/python bench/serve.py --model resnet50 --store $(STORE)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
