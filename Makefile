# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# `make run PORT=9000` or `SCRIBELINE_PORT=9000 make run` (likewise HOST or
# SCRIBELINE_HOST, DATA or SCRIBELINE_DATA_DIR): the flags below win over the
# server's own SCRIBELINE_* settings, so they must start from them.
HOST   ?= $(or $(SCRIBELINE_HOST),127.0.0.1)
PORT   ?= $(or $(SCRIBELINE_PORT),8000)
DATA   ?= $(or $(SCRIBELINE_DATA_DIR),./data)

.PHONY: install run test lint typecheck services bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[server,postgres,redis,speech,test]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/scribeline demo --host $(HOST) --port $(PORT) --data-dir $(DATA)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy src

# PostgreSQL and Redis come from Debian packages; the tests start their own instances.
services:
	@scripts/ensure-services

test: lint typecheck services
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
