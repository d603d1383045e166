# Pulse — WedSync's system-health and performance monitoring pipeline.
# `make help` lists the targets.

SHELL := /bin/bash
GO    ?= go
STATICCHECK_VERSION := v0.8.2
GOVULNCHECK_VERSION := v1.9.0

.DEFAULT_GOAL := help

.PHONY: help build run test soak bench cover lint dashboard cluster

help: ## list the targets
	@grep -hE '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

build: ## build bin/pulse (with the embedded chDB backend)
	$(GO) build -tags chdb -o bin/pulse ./cmd/pulse

run: build ## run the whole pipeline on embedded NATS and chDB (the first run downloads libchdb: 166 MB, 559 MB on disk); prints how to send a first event
	@lib=$$(scripts/libchdb.sh) && CHDB_LIB_PATH=$$lib exec ./bin/pulse serve --data-dir data

cluster: ## run the production topology on loopback until Ctrl-C: ZooKeeper, 2 ClickHouse replicas, 3 NATS (R3), 2 ingest, 2 aggregator, 1 query; prints addresses and tokens
	$(GO) run ./deploy/local-cluster

test: ## start what the tests need (ClickHouse, Postgres, Redis, NATS, Alertmanager, Chromium), run every Go test with -race, then the TypeScript client's tests
	scripts/test.sh

soak: ## the fault suite again and again under load for SOAK_DURATION (default 10m), then a table: fault, events sent, accepted, stored, duplicated, lost
	scripts/test.sh -tags chdb,soak -run '^TestSoak$$' -timeout 60m -v ./cmd/pulse/

bench: ## end-to-end and raw-limit benchmarks against the ClickHouse server, plus hot-path micro-benchmarks
	scripts/bench.sh

cover: ## per-package test coverage
	scripts/test.sh -cover

# govulncheck needs the Go vulnerability database, which it fetches online on every run; on a
# machine without internet access (like the ones this was written on) it cannot run. Then lint
# says so in a banner and passes on the other checks, unless VULNCHECK=require (CI), which makes
# that a failure. Vulnerabilities found (exit 3) always fail.
VULNCHECK ?= warn

lint: ## gofmt, go vet, staticcheck and govulncheck (VULNCHECK=require: fail when its database is unreachable)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags chdb ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) -tags chdb ./...
	@echo "$(GO) run golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION) -tags chdb ./..."; \
	out=$$($(GO) run golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION) -tags chdb ./... 2>&1); rc=$$?; echo "$$out"; \
	if [ $$rc -eq 0 ]; then exit 0; fi; \
	if [ $$rc -ne 3 ] && echo "$$out" | grep -q 'fetching vulnerabilities'; then \
		echo "*** govulncheck NOT RUN: the vulnerability database cannot be reached from this machine; the code was not checked for known vulnerabilities ***"; \
		if [ "$(VULNCHECK)" = require ]; then exit 1; fi; exit 0; \
	fi; \
	echo "govulncheck failed (exit $$rc)"; exit 1

dashboard: ## rebuild the /admin page's bundle (uPlot from npm + internal/dashboard/ui/src) into internal/dashboard/assets
	cd internal/dashboard/ui && npm ci --no-audit --no-fund --ignore-scripts && node build.mjs
