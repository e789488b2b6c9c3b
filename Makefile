# legiti-assets: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV := $(PYTHON) -m uv
RUN := $(UV) run --frozen

export LEGITI_DATA_DIR ?= data
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
START ?= 2018-05-12
END ?= 2020-07-17
HOST ?= 127.0.0.1
PORT ?= 8000
DAGSTER_PORT ?= 3000

.PHONY: help install jvm-archive awesome-dataset update migrate vacuum dev serve bench-online test lint format clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

.venv/.installed: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv>=0.5"
	$(UV) sync --frozen --compile-bytecode  # imports skip compiling even under PYTHONDONTWRITEBYTECODE
	$(RUN) python -m legiti_assets.install  # once per machine: Delta Lake's jars and the JVM archive
	@touch $@

install: .venv/.installed ## create .venv from uv.lock (uv is pip-installed if missing)

jvm-archive: install ## rebuild the Spark driver JVM's class-data archive (~40 s; legiti_assets/jvm_archive.py)
	$(RUN) python -m legiti_assets.install --rebuild-archive

$(DAGSTER_HOME)/dagster.yaml: deploy/dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	@cp deploy/dagster.yaml $@

awesome-dataset: install $(DAGSTER_HOME)/dagster.yaml ## materialize START..END (YYYY-MM-DD) and awesome_dataset
	$(RUN) python -m legiti_assets.run --start $(START) --end $(END)

update: install $(DAGSTER_HOME)/dagster.yaml ## bring every output up to date with the landing, rewriting only what changed
	$(RUN) python -m legiti_assets.update

migrate: install ## once after upgrading: convert Parquet tables (month or day directories) to Delta Lake
	$(RUN) python -m legiti_assets.migrate

vacuum: install ## remove table files unused by any version within the retention period (7 days)
	$(RUN) python -m legiti_assets.vacuum

dev: install $(DAGSTER_HOME)/dagster.yaml ## start the Dagster UI on HOST:DAGSTER_PORT (default 127.0.0.1:3000)
	$(RUN) python -m legiti_assets.dev --host $(HOST) --port $(DAGSTER_PORT)

serve: install ## serve the online store over HTTP on HOST:PORT (GET /features/user/{cpf})
	$(RUN) python -m legiti_assets.online.server --host $(HOST) --port $(PORT)

BENCH_REDIS_PORT ?= 6392
bench-online: install ## p50/p99 reads and load rate of both online stores (100k users)
	@if command -v redis-server >/dev/null; then \
		redis-server --port $(BENCH_REDIS_PORT) --bind 127.0.0.1 --save '' --appendonly no --daemonize yes >/dev/null; \
		trap 'redis-cli -p $(BENCH_REDIS_PORT) shutdown nosave >/dev/null 2>&1' EXIT; \
		$(RUN) python benchmarks/bench_online.py --users 100000 --redis-url redis://127.0.0.1:$(BENCH_REDIS_PORT)/0; \
	else \
		echo "redis-server not found (apt-get install redis-server): SQLite only"; \
		$(RUN) python benchmarks/bench_online.py --users 100000; \
	fi

lint: install ## ruff lint and format check
	$(RUN) ruff check .
	$(RUN) ruff format --check .

format: install ## apply ruff fixes and formatting
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

test: lint $(DAGSTER_HOME)/dagster.yaml ## ruff, dagster definitions validate, pytest
	$(RUN) dagster definitions validate -w workspace.yaml
	$(RUN) pytest

clean: ## remove generated data, Dagster history and caches (keeps the landing file)
	rm -rf $(LEGITI_DATA_DIR)/raw $(LEGITI_DATA_DIR)/feature_store $(LEGITI_DATA_DIR)/datasets \
		$(LEGITI_DATA_DIR)/online_store.db* \
		.dagster_home .tmp_dagster_home_* .pytest_cache .ruff_cache spark-warehouse metastore_db

.PHONY: data bench bench-update bench-daily-bytes
SIZE ?= 10k
SEED ?= 20200717
SIZES ?= 10k,100k
BENCH_ARGS ?=  # e.g. --stock-cap 0 (skip stock butterfree), --daily-repeats 5

data: install ## synthetic landing file of SIZE=10k|100k|1m|10m|30m orders (SEED) in LEGITI_DATA_DIR
	@if [ "$(realpath $(LEGITI_DATA_DIR))" = "$(realpath data)" ]; then \
		echo "set LEGITI_DATA_DIR to another directory: data/ holds the committed sample"; exit 2; fi
	$(RUN) python -m legiti_assets.synthetic --size $(SIZE) --seed $(SEED) --data-dir $(LEGITI_DATA_DIR)

bench: install ## benchmark assets vs DuckDB and stock butterfree on SIZES (e.g. SIZES=1m)
	$(RUN) python -m benchmarks.bench --sizes $(SIZES) --seed $(SEED) $(BENCH_ARGS)

bench-update: install ## make update after one-day drops vs a full build, on SIZE=10k|100k|1m|10m
	$(RUN) python -m benchmarks.bench_update --size $(SIZE) --seed $(SEED)

bench-daily-bytes: install ## bytes one daily run writes (Delta) vs the month files, SIZE=10k|100k|1m|10m
	$(RUN) python -m benchmarks.bench_daily_bytes --size $(SIZE) --seed $(SEED)

.PHONY: test-cluster test-ui test-object-store

test-cluster: install $(DAGSTER_HOME)/dagster.yaml ## main job on a local standalone Spark cluster == local mode
	LEGITI_CLUSTER_TESTS=1 $(RUN) pytest legiti_assets_tests/cluster -v -s

test-object-store: install ## main job, update and retrieval on an S3 server (moto, loopback) == local
	LEGITI_OBJECT_STORE_TESTS=1 $(RUN) pytest legiti_assets_tests/object_store -v -s

test-ui: install $(DAGSTER_HOME)/dagster.yaml ## Dagster UI in Chromium (apt chromium); docs/screenshots
	LEGITI_UI_TESTS=1 $(RUN) pytest legiti_assets_tests/ui -v

.PHONY: bench-storage
STORAGE_SIZES ?= sample,1m
bench-storage: install ## main job with Dagster's instance in pooled SQLite, stock SQLite, PostgreSQL (STORAGE_SIZES=sample,1m)
	scripts/with-postgres $(RUN) python -m benchmarks.bench_storage --sizes $(STORAGE_SIZES) --seed $(SEED)
