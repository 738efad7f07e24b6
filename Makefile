# Signet. `make test` is the test command CI runs (see README). Caches live outside the
# clone so that a fresh clone reuses earlier builds.
SHELL := /bin/bash
export SIGNET_CACHE ?= $(HOME)/.cache/signet
export CARGO_TARGET_DIR ?= $(SIGNET_CACHE)/target
export GOMODCACHE ?= $(SIGNET_CACHE)/go/mod
export GOCACHE ?= $(SIGNET_CACHE)/go/build
CARGO ?= cargo

.PHONY: all bench build dashboard-picture demo fuzz generate images lint unit-test e2e-test test env-up env-down env-build tidy

all: build

build:
	$(CARGO) build --workspace --locked

# Signet end to end on this machine: control plane and registry, installed from the OLM
# bundle, a TaskRun signed and verified with cosign. Leaves it running; `make env-down` stops it.
# Builds only the peers the demo uses (tests/env/build demo), not the whole test environment.
# `make demo REAL=1`: the same from Signet's own images (`make images`) as real pods on a real
# node (kubelet + containerd + runc), with Tekton's controller really running a TaskRun that
# builds and pushes an image. The first run builds the node and Tekton (about 20 minutes more).
demo: export SIGNET_ENV_TIER = demo
demo: export SIGNET_ENV_NODE = $(if $(REAL),1,0)
demo: export SIGNET_DEMO_REAL = $(if $(REAL),1,)
demo:
	tests/env/debian-packages $(if $(REAL),real,demo)
	tests/env/build demo $(if $(REAL),node tekton-controller,)
	@echo "[make demo] building signet-operator, signet-signer, kubectl-signet and the demo (first time: about 2 minutes)"
	$(CARGO) build --workspace --bins --examples --locked
	$(if $(REAL),tests/env/up && tests/env/images "$$(sed -n 's/^SIGNET_REFERRERS_REGISTRY=//p' $(SIGNET_CACHE)/env/env)/signet-dev" --profile ci-images,)
	$(CARGO_TARGET_DIR)/debug/examples/demo

# Signet's images without Docker (tests/env/images): static musl binaries in OCI images
# assembled with crane, pushed to REGISTRY (default: the running test environment's registry)
# and printed by digest. RELEASE=1 records the digests in olm/images.env for `make generate`.
ENV_REGISTRY = $(shell sed -n 's/^SIGNET_REFERRERS_REGISTRY=//p' $(SIGNET_CACHE)/env/env 2>/dev/null)
REGISTRY ?= $(if $(ENV_REGISTRY),$(ENV_REGISTRY)/signet-dev,)
images:
	@test -n "$(REGISTRY)" || { echo "make images: set REGISTRY (e.g. ghcr.io/signet-dev), or start the test environment (make env-up)"; exit 1; }
	tests/env/images $(REGISTRY) $(if $(RELEASE),--release,)

# Regenerates every generated file; `make unit-test` fails when they drift.
generate:
	$(CARGO) run -q -p signet-operator --locked -- generate .

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

FUZZ_SEED ?= 20261128

# The fuzz targets run with a fixed seed here so that a test run is reproducible; `make fuzz`
# explores with a random one.
unit-test:
	PROPTEST_RNG_SEED=$(FUZZ_SEED) $(CARGO) test --workspace --exclude signet-e2e --locked

env-build:
	tests/env/debian-packages all
	tests/env/build all

env-up:
	tests/env/up

env-down:
	tests/env/down

# End-to-end tests against the real control plane; brings it up first if needed.
e2e-test:
	$(CARGO) build --workspace --bins --locked
	$(CARGO) test -p signet-e2e --locked

# Everything: lint, unit tests, a fresh environment, end-to-end tests, and the environment
# torn down again whether or not the tests passed.
test: lint unit-test
	tests/env/down
	tests/env/up
	tests/env/images "$$(sed -n 's/^SIGNET_REFERRERS_REGISTRY=//p' $(SIGNET_CACHE)/env/env)/signet-dev" --profile ci-images
	$(CARGO) build --workspace --bins --locked
	status=0; $(CARGO) test -p signet-e2e --locked --no-fail-fast || status=$$?; tests/env/down; exit $$status

# Benchmarks against the running environment (started if needed), release binaries. Ends
# with one table of every phase, written as target/bench/bench.json beside bench.svg;
# `make bench BASELINE=<an earlier bench.json>` adds each figure's ratio to that run.
export BASELINE
bench:
	$(CARGO) build --release --workspace --bins --locked
	rm -f $(CARGO_TARGET_DIR)/bench/results.jsonl
	$(CARGO) bench -p signet-e2e --bench operator --locked
	$(CARGO) bench -p signet-e2e --bench signer --locked
	$(CARGO) bench -p signet-e2e --bench kms --locked
	$(CARGO) bench -p signet-e2e --bench scale --locked
	$(CARGO) run -q -p signet-e2e --example bench_report --locked

# docs/monitoring/dashboard.svg: the dashboard's panels plotted from a real (release) signer's
# /metrics, scraped every second while it signs a steady load, a spell of failures and a burst.
dashboard-picture:
	$(CARGO) build --release --workspace --bins --locked
	$(CARGO) run --release -p signet-e2e --example dashboard_picture --locked

# The fuzz targets (signer/tests/fuzz.rs) for longer than `make test` runs them: every parser
# that reads a run, a pull secret, a key, the configuration or a peer's answer.
FUZZ_CASES ?= 20000
fuzz:
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test -p signet-signer --release --locked --test fuzz

# Regenerates the Go tools modules from tests/env/versions.env.
tidy:
	tests/env/gen-tools-mod
