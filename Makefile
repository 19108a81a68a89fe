# medtransfer — the commands the README documents. CI (.ci/run) runs exactly `make install` then `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Tests and demos never touch the network: no hub downloads, W&B offline, no albumentations update check.
OFFLINE := HF_HUB_OFFLINE=1 WANDB_MODE=offline NO_ALBUMENTATIONS_UPDATE=1 WANDB_SILENT=true

.PHONY: install test demo bench lint clean

install:  ## venv + pinned dependencies (torch 2.14.1 / torchvision 0.29.1 pair) + .env from the example
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[dev]"
	test -f .env || cp .env.example .env

test:  ## offline test suite, 2 workers (< 15 min on 2 cores)
	$(OFFLINE) $(PY) -m pytest -q -n 2 --durations=20 tests

demo:  ## train a small U-Net on synthetic polyps, offline, < 3 min on 2 CPU cores
	$(OFFLINE) $(PY) train.py experiment=demo

bench:  ## Lightning vs bare loop, data pipeline, sweep overhead, eval, memory -> bench/results.{json,md} (< 10 min on 2 CPU cores)
	$(OFFLINE) $(PY) scripts/bench.py $(BENCH_ARGS)

lint:
	$(PY) -m ruff check src tests scripts

clean:
	rm -rf .pytest_cache runs/smoke runs/demo
