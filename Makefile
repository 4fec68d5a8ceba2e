# demix — set-up, checks and demos. Every target creates the virtualenv if it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test test-all lint demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,room,plot,cluster]'
	touch $(STAMP)

lint: install
	$(BIN)/ruff check demix tests benchmarks
	$(BIN)/ruff format --check demix tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

# Also the slow tests (peak memory of hour-scale streamed runs in subprocesses, a few minutes).
test-all: lint
	$(BIN)/pytest -q -m ""

demo: install
	rm -rf demo_out
	$(BIN)/demix mix sample_audio/voice_1.wav sample_audio/voice_2.wav sample_audio/voice_3.wav -o demo_out/mix --seed 1
	$(BIN)/demix ica demo_out/mix/mixture.wav -o demo_out/ica
	$(BIN)/demix eval --reference demo_out/mix --estimate demo_out/ica

bench: install
	for script in benchmarks/bench_*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) demo_out .pytest_cache .mypy_cache .ruff_cache
