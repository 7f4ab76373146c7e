# The two commands a fresh machine needs: `make demo` (the main job) and `make test`.
SHELL := /bin/bash
UV_VERSION := 0.13.8
PYTEST_ARGS ?=

.PHONY: setup infra-up infra-down demo test test-unit bench schemas k8s-tools k8s-validate k8s-apiserver faults faults-ci fuzz

setup:
	@command -v uv >/dev/null 2>&1 || python3 -m pip install -q "uv==$(UV_VERSION)"
	@uv sync --frozen --quiet

infra-up: setup
	@bash infra/local.sh up

infra-down:
	@bash infra/local.sh down

## Local Kafka + PostgreSQL, all four services, simulated mini-program traffic, summary + audit.
demo: infra-up
	@eval "$$(bash infra/local.sh env)" && uv run --frozen python -m simulation.run

## The whole suite against the real Kafka and PostgreSQL (started here if not running).
test: infra-up
	@eval "$$(bash infra/local.sh env)" && uv run --frozen pytest $(PYTEST_ARGS)

## schemathesis against every service's OpenAPI with many examples per operation (CI runs 4), plus
## the authorisation matrix (docs/security.md)
fuzz: infra-up
	@eval "$$(bash infra/local.sh env)" && FENXIAO_FUZZ_EXAMPLES=$${FENXIAO_FUZZ_EXAMPLES:-100} \
		uv run --frozen pytest tests/e2e/test_security_api.py --timeout 3600 $(PYTEST_ARGS)

test-unit: setup
	@uv run --frozen pytest tests/unit $(PYTEST_ARGS)

bench: infra-up
	@eval "$$(bash infra/local.sh env)" && uv run --frozen python -m bench.run

schemas: setup
	@uv run --frozen python -m shared.events.schemas

## Kubernetes validation tools (kustomize, kubeconform, Kubernetes + CRD schemas), built from
## package registries into ~/.cache/fenxiao-k8s once per machine (deploy/validate/setup.sh).
k8s-tools: setup
	@bash deploy/validate/setup.sh >/dev/null

## Render every overlay and validate it offline (also part of `make test`).
k8s-validate: k8s-tools
	@uv run --frozen pytest tests/deploy $(PYTEST_ARGS)

## The fault suite on a private Kafka/PostgreSQL (infra/cluster.sh): kills, restarts, scaling, a 3-broker cluster.
faults: setup
	@flock /tmp/fenxiao-faults.lock uv run --frozen python -m simulation.faults --out .local/faults-summary.json

## The reduced fault suite CI runs after `make test`.
faults-ci: setup
	@flock /tmp/fenxiao-faults.lock uv run --frozen python -m simulation.faults --quick --out .local/faults-ci-summary.json

## A real API server (etcd from Debian, kube-apiserver + kubectl built from k8s.io/kubernetes,
## cached) with the CRDs: server-side dry run of every overlay. Slow when cold; run by .ci/run
## after `make test`, outside the quick path.
k8s-apiserver: k8s-tools
	@bash deploy/validate/apiserver-build.sh >/dev/null
	@FENXIAO_K8S_APISERVER=1 uv run --frozen pytest tests/deploy/test_apiserver.py $(PYTEST_ARGS)
