# kubetfx — `make help` lists the targets. Everything runs from the project's own
# virtual environment, created on first use.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
IMAGE  ?= ghcr.io/kubetfx/kubetfx:0.1.0
ROOT   ?= kubetfx-local
BENCH_ROWS ?= 1000000
STAMP  := $(VENV)/.kubetfx-installed

export KUBETFX_IMAGE := $(IMAGE)
export PYTHONDONTWRITEBYTECODE := 1

.DEFAULT_GOAL := help
.PHONY: help install run test compile bench image clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv if missing and install kubetfx with pinned dependencies

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

run: install ## run the penguin pipeline end to end on the embedded default (kfp.local, kubetfx-local/)
	$(PY) -m kubetfx.pipelines run penguin --local --root $(ROOT)

test: install ## run the test suite
	$(PY) -m pytest -q

compile: install ## compile the penguin pipeline to build/penguin.yaml (IMAGE=... sets the component image)
	$(PY) -m kubetfx.pipelines compile penguin --image $(IMAGE) --output build/penguin.yaml

bench: install ## benchmarks on 1,000,000 synthetic rows: data validation, then Transform + Trainer (BENCH_ROWS=...)
	$(PY) tests/benchmarks/bench_data_validation.py --rows $(BENCH_ROWS)
	$(PY) tests/benchmarks/bench_model.py --rows $(BENCH_ROWS)

image: ## build the component image (IMAGE=...; needs docker or buildah)
	@if command -v docker >/dev/null && docker info >/dev/null 2>&1; then \
		docker build -f images/component/Dockerfile -t $(IMAGE) . ; \
	elif command -v buildah >/dev/null; then \
		buildah bud -f images/component/Dockerfile -t $(IMAGE) . ; \
	else echo "make image: needs docker or buildah" >&2; exit 1; fi

clean: ## remove local runs, compiled pipelines and caches (keeps .venv)
	rm -rf build $(ROOT) bench-results .pytest_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

# --- serving (the KServe predictor) ---
SERVE_MODEL ?= penguin
HTTP_PORT   ?= 8080
GRPC_PORT   ?= 8081
.PHONY: serve bench-serve

serve: install ## serve the latest pushed model of kubetfx-local/model-repository (KServe V1/V2 REST :8080, gRPC :8081)
	$(PY) -m kubetfx.components.predictor --model_repository $(ROOT)/model-repository --model_name $(SERVE_MODEL) \
		--http_port $(HTTP_PORT) --grpc_port $(GRPC_PORT)

bench-serve: install ## benchmark the predictor vs a naive kserve.Model with hey (installs hey with apt-get if missing)
	command -v hey >/dev/null || (apt-get update && apt-get install -y hey)
	$(PY) tests/benchmarks/bench_serving.py
