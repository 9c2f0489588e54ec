# Palisade developer commands. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
NODES ?= 3
# The real-node suite's nodes: a comma-separated list of node kinds (e2e/src/realnode.rs
# NodeKind: a Debian suite, `-arm64` after it for arm64), one guest each, all in one cluster.
# Default: Debian 12 beside the newest Debian (unstable; testing when unstable cannot be
# installed). REAL_NODE=KIND (one node) is kept for older command lines.
SUITE_NODES := bookworm,sid
REAL_NODE ?=
SUITE_REAL_NODES = $(or $(REAL_NODES),$(REAL_NODE),$(SUITE_NODES))
ARCH_OF_REAL_NODES = $(if $(findstring -arm64,$(SUITE_REAL_NODES)),arm64,amd64)

.PHONY: deps test-deps help bins release-bins host-release-bins bench-agent bench-operator bench-learn bench-denials generate check-generated lint test unit-test e2e-test realnode-test realnode-test-arm64 realnode-artifacts test-cluster control-plane up down demo bench chart-check image

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

deps: ## Install (as root) or name the Debian packages the build needs
	@e2e/scripts/system-deps.sh

test-deps: ## Install (as root) or name the Debian packages the tests need
	@e2e/scripts/system-deps.sh --test

generate: ## Regenerate the CRD YAML (crds/, the chart's crds/) and manifests/ from their sources
	$(CARGO) run -q -p palisade-domain --bin crdgen -- crds charts/palisade/crds
	e2e/scripts/render-manifests.sh manifests

check-generated: ## Fail if crds/, charts/palisade/crds/ or manifests/ differ from a fresh generation
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(CARGO) run -q -p palisade-domain --bin crdgen -- "$$tmp/crds"; \
	e2e/scripts/render-manifests.sh "$$tmp/manifests"; \
	for pair in crds:crds charts/palisade/crds:crds manifests:manifests; do \
	  dir=$${pair%%:*}; fresh="$$tmp/$${pair##*:}"; \
	  if ! diff -u <(cd "$$dir" && ls *.yaml) <(cd "$$fresh" && ls *.yaml) >/dev/null; then \
	    echo "$$dir: the YAML files differ from what is generated: run 'make generate'"; exit 1; fi; \
	  for f in "$$fresh"/*.yaml; do \
	    diff -u "$$dir/$$(basename "$$f")" "$$f" || { echo "$$dir/$$(basename "$$f") is stale: run 'make generate'"; exit 1; }; \
	  done; \
	done; \
	echo "generated files are in sync"

lint: ## cargo fmt --check and clippy with -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --features palisade-e2e/realnode -q -- -D warnings

control-plane: ## Build (once) or locate etcd, kube-apiserver and kubectl; print their directory
	@e2e/scripts/control-plane-bin.sh

unit-test: ## Unit and integration tests that need no API server
	$(CARGO) test --workspace --exclude palisade-e2e

e2e-test: bins ## End-to-end tests against a real local etcd + kube-apiserver (simulated nodes)
	HELM="$$(e2e/scripts/helm-bin.sh)" KUBEBUILDER_ASSETS="$$(e2e/scripts/control-plane-bin.sh)" $(CARGO) test -p palisade-e2e

test: test-deps bins ## Every test: unit, integration, end-to-end, then the real-node suite (all run even if one fails)
	@rc=0; \
	HELM="$$(e2e/scripts/helm-bin.sh)" KUBEBUILDER_ASSETS="$$(e2e/scripts/control-plane-bin.sh)" $(CARGO) test --workspace --no-fail-fast || rc=1; \
	$(MAKE) --no-print-directory realnode-test || rc=1; \
	exit $$rc

test-cluster: ## The real-node suite against an existing cluster (KUBECONFIG=...; node-shell checks are skipped)
	@[[ -n "$${KUBECONFIG:-}" ]] || { echo "make test-cluster: set KUBECONFIG to the cluster to test"; exit 1; }
	HELM="$$(e2e/scripts/helm-bin.sh)" KUBEBUILDER_ASSETS="$$(e2e/scripts/control-plane-bin.sh)" PALISADE_E2E_EXISTING_CLUSTER=1 \
	  $(CARGO) test -p palisade-e2e --features realnode --test realnode -- --nocapture

realnode-artifacts: test-deps ## Build (once, cached) what a real node needs: Kubernetes node binaries, guest image, images
	e2e/scripts/control-plane-bin.sh --real-node $(ARCH_OF_REAL_NODES) >/dev/null
	IFS=, read -ra kinds <<< "$(SUITE_REAL_NODES)"; for kind in "$${kinds[@]}"; do [[ $$kind != 1 ]] || kind=bookworm; e2e/realnode/build-guest.sh "$$kind" >/dev/null || [[ $$kind == sid ]]; done
	e2e/realnode/test-images.sh >/dev/null
	images/build.sh

realnode-test: test-deps bins ## The real-node suite: QEMU guests (REAL_NODES=bookworm,sid by default) join the local control plane, Palisade installed by helm, pods confined for real on each
	HELM="$$(e2e/scripts/helm-bin.sh)" KUBEBUILDER_ASSETS="$$(e2e/scripts/control-plane-bin.sh --real-node $(ARCH_OF_REAL_NODES))" PALISADE_REAL_NODES="$(SUITE_REAL_NODES)" \
	  $(CARGO) test -p palisade-e2e --features realnode --test realnode --test images -- --nocapture

realnode-test-arm64: test-deps bins ## On an arm64 guest (qemu-system-aarch64, software emulation): the chart's agent from the arm64 image, pods confined by both kinds, a profile for the other architecture
	HELM="$$(e2e/scripts/helm-bin.sh)" KUBEBUILDER_ASSETS="$$(e2e/scripts/control-plane-bin.sh --real-node arm64)" PALISADE_REAL_NODES=bookworm-arm64 \
	  $(CARGO) test -p palisade-e2e --features realnode --test realnode -- --nocapture \
	  chart_privileges_hold_on_the_node seccomp_profile_confines_a_pod seccomp_profile_for_another_architecture apparmor_raw_enforce_and_complain

bins: ## Build the operator, agent and palisade-dev binaries
	$(CARGO) build --bins -q

up: deps bins ## Run the control plane, operator and NODES simulated nodes until Ctrl-C / make down (REAL_NODES=1, or a list of kinds such as bookworm,sid or bookworm,bookworm-arm64: plus real nodes)
	@if [[ "$${REAL_NODES:-0}" != 0 ]]; then \
	  e2e/scripts/system-deps.sh --test; \
	  arch=amd64; [[ $$REAL_NODES != *-arm64* ]] || arch=arm64; \
	  HELM="$$(e2e/scripts/helm-bin.sh)" KUBEBUILDER_ASSETS="$$(e2e/scripts/control-plane-bin.sh --real-node $$arch)" NODES=$(NODES) REAL_NODES=$$REAL_NODES target/debug/palisade-dev up; \
	else \
	  KUBEBUILDER_ASSETS="$$(e2e/scripts/control-plane-bin.sh)" NODES=$(NODES) target/debug/palisade-dev up; \
	fi

down: ## Stop what `make up` (or `make demo KEEP=1`) started
	@if [[ -x target/debug/palisade-dev ]]; then target/debug/palisade-dev down; else echo "nothing to stop"; fi

demo: deps bins ## Run Palisade end to end locally (3 nodes), show the result, tear down (KEEP=1 keeps it)
	KUBEBUILDER_ASSETS="$$(e2e/scripts/control-plane-bin.sh)" NODES=$(NODES) KEEP=$${KEEP:-0} target/debug/palisade-dev demo

release-bins: host-release-bins ## Build optimized binaries (what the benchmarks measure), and the palisade CLI for amd64 and arm64
	@for arch in amd64 arm64; do dir=$$(images/cargo-arch.sh $$arch -p palisade-cli) || exit 1; echo "palisade ($$arch): $$dir/palisade"; done

host-release-bins: # the benchmarks' binaries: optimized, this machine's architecture only
	$(CARGO) build --release --bins -q

bench: host-release-bins ## Latency, bulk, memory, API writes on NODES=20 real agents, then scale on SCALE_NODES=1000 simulated nodes; RUNS=3 of each, medians
	KUBEBUILDER_ASSETS="$$(e2e/scripts/control-plane-bin.sh)" target/release/palisade-dev --dir .palisade-bench bench --nodes $(if $(filter command line environment,$(origin NODES)),$(NODES),20)

bench-operator: host-release-bins ## Operator memory with 1000 profiles × 100 NodeProfileStatus objects
	KUBEBUILDER_ASSETS="$$(e2e/scripts/control-plane-bin.sh)" target/release/palisade-dev --dir .palisade-bench-op bench-operator

bench-learn: host-release-bins ## What learning costs an agent per read of the kernel log (128 KiB of real records)
	target/release/palisade-dev bench-learn

bench-denials: host-release-bins ## One agent under a storm of 100 000 denials a minute: CPU, memory, Event writes
	KUBEBUILDER_ASSETS="$$(e2e/scripts/control-plane-bin.sh)" target/release/palisade-dev --dir .palisade-bench-denials bench-denials

bench-agent: host-release-bins ## One agent's install cost, memory and restart time with 1000 profiles of each kind
	KUBEBUILDER_ASSETS="$$(e2e/scripts/control-plane-bin.sh)" target/release/palisade-dev --dir .palisade-bench bench-agent

chart-check: ## helm lint and template (default and ci/ values), then the chart's e2e tests (server-side dry-run, node restriction)
	@helm=$$(e2e/scripts/helm-bin.sh); \
	$$helm lint --strict charts/palisade; \
	$$helm lint --strict charts/palisade -f charts/palisade/ci/custom-values.yaml; \
	$$helm template palisade charts/palisade -n palisade-system >/dev/null; \
	$$helm template palisade charts/palisade -n palisade-system -f charts/palisade/ci/custom-values.yaml >/dev/null; \
	echo "helm lint and template: ok"
	HELM="$$(e2e/scripts/helm-bin.sh)" KUBEBUILDER_ASSETS="$$(e2e/scripts/control-plane-bin.sh)" $(CARGO) test -q -p palisade-e2e --test shipping

image: ## Build the operator and agent images (linux/amd64 + linux/arm64) without a container engine into target/images/ (IMAGE_REGISTRY=, IMAGE_TAG=, IMAGE_ARCHES=)
	IMAGE_REGISTRY="$(IMAGE_REGISTRY)" IMAGE_TAG="$(IMAGE_TAG)" IMAGE_ARCHES="$(IMAGE_ARCHES)" images/build.sh
