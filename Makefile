# The two commands of the README: `make dev` (run everything) and `make test` (every check).
# Both create the virtual environment in .venv first if it is missing or out of date.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PORT ?= 9000
DATA ?= data

.PHONY: dev test test-slow lint client-tools bench bench-quick bench-scale bench-scale-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "s3compat needs Python 3.11 or newer"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

dev: $(STAMP)
	$(BIN)/s3compat dev --data-dir $(DATA) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The real clients tests/clients drives (rclone, s3fs, s3cmd, aws-cli v2), from Debian.
client-tools:
	sh tests/clients/install-tools.sh

test: lint client-tools
	$(BIN)/pytest -m "not slow"

test-slow: $(STAMP)
	$(BIN)/pytest -m slow || [ $$? -eq 5 ]  # 5: no test is marked slow yet

# s3compat against moto (and the raw ceiling) in one run: prints a table, asserts nothing.
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_compare.py

bench-quick: $(STAMP)
	$(BIN)/python benchmarks/bench_compare.py --quick

# Database statements and CPU per request by S3 action; two gateways on one database.
bench-scale: $(STAMP)
	$(BIN)/python benchmarks/bench_scale.py

bench-scale-quick: $(STAMP)
	$(BIN)/python benchmarks/bench_scale.py --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
