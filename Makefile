# One command to set up and run the demo (`make demo`), one to run the tests (`make test`).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU build of torch for this box and CI; on a GPU cluster install your CUDA build of torch first.
TORCH ?= torch==2.13.0

.PHONY: setup demo test lint bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[train,test]"
	touch $@

# Trains the embedded default (tiny DeBERTa-v2, local tokenizer, demo data) with 2 CPU processes under ZeRO-2,
# then lists what it wrote and its CV scores.
demo: setup
	$(BIN)/accelerate launch --config_file ds_configs/accelerate/cpu_2proc_zero2.yaml bin/train.py
	$(BIN)/ckpt-tui ls runs
	$(BIN)/ckpt-tui metrics runs/kfold

lint: setup
	$(BIN)/ruff check tui trainer bin tests bench
	$(BIN)/lint-imports

test: setup lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: setup
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done
