# kubetfx — `make help` lists the targets. Everything runs from the project's own
# virtual environment, created on first use.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
ROOT   ?= kubetfx-local
BENCH_ROWS ?= 1000000
# The TFX 1.16 anchor bench-e2e compares with: ANCHOR_DIR=... bash ../shared/anchor-tfx/setup.sh
ANCHOR_DIR ?= $(abspath ../anchor)
STAMP  := $(VENV)/.kubetfx-installed

# Image names and tags: images/images.env is the one place that names them.
include images/images.env
IMAGE  ?= $(KUBETFX_IMAGE)
# Cluster targets work on one environment: pipelines/configs/$(ENV).yaml + manifests/overlays/$(ENV).
ENV    ?= dev
PARAMS ?=
# podman/buildah need a few settings in a rootful sandbox (images/podman/containers.conf).
CONTAINERS_CONF ?= $(CURDIR)/images/podman/containers.conf

export KUBETFX_IMAGE := $(IMAGE)
export CONTAINERS_CONF
export PYTHONDONTWRITEBYTECODE := 1

.DEFAULT_GOAL := help
.PHONY: help install run test monitor compile bench bench-e2e image image-gpu e2e manifests submit schedule deploy clean clean-models \
	cluster-build cluster-up cluster-down cluster-status test-cluster

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(firstword $(MAKEFILE_LIST)) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv if missing and install kubetfx with pinned dependencies

# TensorFlow Transform / TFMA pin Python 3.11: say so up front, and never reuse a .venv of another Python.
PY311 := import sys; sys.exit(sys.version_info[:2] != (3, 11))
$(STAMP): pyproject.toml components/common/_rowfill.c  # the C: compiled by the install
	@if [ -x $(PY) ] && ! $(PY) -c '$(PY311)' 2>/dev/null; then \
		echo "make: $(VENV) uses $$($(PY) --version 2>&1), not Python 3.11: recreating it"; rm -rf $(VENV); fi
	@test -x $(PY) || { $(PYTHON) -c '$(PY311)' 2>/dev/null || { echo "make: kubetfx needs Python 3.11" \
		"(tensorflow-transform and tensorflow-model-analysis pin it); $(PYTHON) is $$($(PYTHON) --version 2>&1)." \
		"Run with PYTHON=python3.11" >&2; exit 2; }; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

run: install ## run the penguin pipeline end to end on the embedded default (kfp.local, kubetfx-local/)
	$(PY) -m kubetfx.pipelines run penguin --local --root $(ROOT)

test: install ## run the test suite (no containers, no cluster)
	$(PY) -m pytest -q

bench: install ## benchmarks on 1,000,000 synthetic rows: data validation, Transform + Trainer, Evaluator, BulkInferrer vs serving (BENCH_ROWS=...)
	$(PY) tests/benchmarks/bench_data_validation.py --rows $(BENCH_ROWS)
	$(PY) tests/benchmarks/bench_model.py --rows $(BENCH_ROWS)
	$(PY) tests/benchmarks/bench_evaluator.py --rows $(BENCH_ROWS)
	$(PY) tests/benchmarks/bench_bulk_inferrer.py --rows $(BENCH_ROWS)

bench-e2e: install ## TFX 1.16 (ANCHOR_DIR) and kubetfx alternately, same-run ratios: the penguins, then the anchor's 1M-row CSV (3 pairs each; exit 2 without the anchor)
	$(PY) tests/benchmarks/bench_e2e.py --runs 3 --anchor $(ANCHOR_DIR)
	$(PY) tests/benchmarks/bench_e2e.py --runs 3 --anchor $(ANCHOR_DIR) --big --output bench-results/bench_e2e_1m.json

# --- containers and clusters ---

image: ## build the component image (images/images.env) with docker or podman/buildah (base built locally if no registry), then Beam's SDK worker image on it
	IMAGE=$(IMAGE) images/build.sh cpu
	IMAGE=$(IMAGE) images/build.sh worker

image-gpu: ## build the GPU image variant (TensorFlow with CUDA; the Trainer on a GPU pool)
	GPU_IMAGE=$(KUBETFX_GPU_IMAGE) images/build.sh gpu

e2e: install image ## containerised end to end: every stage in the image, then the ServingRuntime's container answers
	KUBETFX_E2E=1 $(PY) -m pytest -q -p no:cacheprovider tests/e2e

compile: install ## compile the penguin pipeline for ENV (default dev) to build/penguin-ENV.yaml
	$(PY) -m kubetfx.pipelines compile penguin $(if $(ENV),--env $(ENV)) --image $(IMAGE)

manifests: install ## render every environment's kustomize overlay (offline) to build/manifests/<env>.yaml
	$(PY) -m kubetfx.pipelines manifests

submit: install ## compile for ENV, upload to Kubeflow Pipelines and start a run (PARAMS='--param input_uri=...')
	$(PY) -m kubetfx.pipelines submit penguin --env $(ENV) --image $(IMAGE) $(PARAMS)

schedule: install ## compile for ENV, upload and create or replace the recurring run (nightly continuous training)
	$(PY) -m kubetfx.pipelines schedule penguin --env $(ENV) --image $(IMAGE) $(PARAMS)

deploy: install ## apply manifests/overlays/ENV server-side (field manager kubetfx-deploy; the InferenceService is the Pusher's)
	$(PY) -m kubetfx.pipelines deploy --env $(ENV)

# --- a real Kubernetes control plane on 127.0.0.1 (cluster/: pinned in cluster/kubernetes/go.mod) ---
CLUSTER := $(PY) cluster/local_cluster.py

cluster-build: install ## build the pinned Kubernetes, containerd, CoreDNS, Knative, Traefik and KServe from Go source once per machine (into ~/.cache/kubetfx)
	$(CLUSTER) build

cluster-up: install ## start the local cluster (control plane with RBAC, node, Knative + ingress, KServe) on 127.0.0.1; a no-op when up
	$(CLUSTER) up

cluster-down: install ## stop the local cluster's processes by their PIDs and delete its state
	$(CLUSTER) down

cluster-status: install ## the local cluster's processes, their memory, and the API server's readiness
	$(CLUSTER) status

test-cluster: cluster-up ## the cluster tests (deploy, RBAC, the Pusher as its ServiceAccount) against the local cluster
	KUBECONFIG=$$($(CLUSTER) kubeconfig) KUBETFX_CLUSTER=1 $(PY) -m pytest -q -p no:cacheprovider tests/cluster

# make serve/monitor MODEL=<any pushed model> (default penguin; SERVE_MODEL is the old name). `make monitor`
# retrains penguin and churn itself; another model retrains when given its data: DATA=... LABEL=...
MODEL ?= $(or $(SERVE_MODEL),penguin)
DATA  ?=
LABEL ?=
monitor: install ## monitor `make serve`'s prediction log of MODEL vs its training data; retrain + push when drifted
	$(PY) -m kubetfx.pipelines monitor --root $(ROOT) $(if $(DATA),--data '$(DATA)' --label '$(LABEL)' --name $(MODEL) \
		--retrain,--model $(MODEL) $(if $(filter penguin churn,$(MODEL)),--retrain))

clean: ## remove local runs, compiled pipelines and caches (keeps pushed models, .venv and built images)
	rm -rf build bench-results .pytest_cache $(ROOT)/pipeline-root $(ROOT)/logs $(ROOT)/data
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
	@if [ -d $(ROOT)/model-repository ]; then echo "kept $(ROOT)/model-repository (pushed models; make clean-models removes them)"; fi

clean-models: ## delete the local model repository (every pushed model version in kubetfx-local/model-repository)
	rm -rf $(ROOT)/model-repository

# --- serving (the KServe predictor) ---
HTTP_PORT   ?= 8080
CANARY      ?= 0
GRPC_PORT   ?= 8081
.PHONY: serve bench-serve bench-abuse

serve: install ## serve the latest pushed MODEL (default penguin; REST :8080, gRPC :8081), logging for make monitor; CANARY=P: new versions get P% first
	$(PY) -m kubetfx.components.predictor --model_repository $(ROOT)/model-repository --model_name $(MODEL) \
		--http_port $(HTTP_PORT) --grpc_port $(GRPC_PORT) --prediction_log_dir $(ROOT)/prediction-log \
		--canary_percent $(CANARY)

bench-serve: install ## benchmark the predictor vs a naive kserve.Model (3 rounds, medians, the speed targets; installs hey)
	command -v hey >/dev/null || (apt-get update && apt-get install -y hey)
	$(PY) tests/benchmarks/bench_serving.py --servers kubetfx,kubetfx-logged,naive

bench-abuse: install ## 30 s of good + hostile traffic at the predictor: fails on a 5xx, a reset or a log over 1 MB
	command -v hey >/dev/null || (apt-get update && apt-get install -y hey)
	$(PY) tests/benchmarks/bench_abuse.py

# --- Beam engines: Flink and Spark clusters on this machine (engines/; every version in engines/versions.env) ---
ENGINE_WORKERS ?= 2
ENGINES_RUN = KUBETFX_ENGINES=1 engines/engines.sh exec --
.PHONY: cluster-engines-up cluster-engines-down test-engines bench-engines

cluster-engines-up: install ## start Flink (JobManager + ENGINE_WORKERS TaskManagers) and Spark (master + workers), Beam job servers, on 127.0.0.1
	engines/engines.sh up all --workers $(ENGINE_WORKERS)

cluster-engines-down: ## stop what make cluster-engines-up started
	engines/engines.sh down all

test-engines: install ## engines up; Transform and the Evaluator (TFMA) on Flink and Spark vs the local run (tests/engines); engines down
	engines/engines.sh up all --workers $(ENGINE_WORKERS) || { engines/engines.sh down all; exit 1; }
	$(ENGINES_RUN) $(PY) -m pytest -q -p no:cacheprovider tests/engines; rc=$$?; engines/engines.sh down all; exit $$rc

bench-engines: install ## Transform and the Evaluator on BENCH_ROWS rows: local default vs Flink and Spark with 1 and 2 workers
	$(PY) tests/benchmarks/bench_engines.py --rows $(BENCH_ROWS)
