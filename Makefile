# Pulse — WedSync's system-health and performance monitoring pipeline.
# `make help` lists the targets.

SHELL := /bin/bash
GO    ?= go
STATICCHECK_VERSION := v0.8.2

.DEFAULT_GOAL := help

.PHONY: help build run test soak bench cover lint dashboard

help: ## list the targets
	@grep -hE '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

build: ## build bin/pulse (with the embedded chDB backend)
	$(GO) build -tags chdb -o bin/pulse ./cmd/pulse

run: build ## run the whole pipeline on embedded NATS and chDB (the first run downloads libchdb: 166 MB, 559 MB on disk); prints how to send a first event
	@lib=$$(scripts/libchdb.sh) && CHDB_LIB_PATH=$$lib exec ./bin/pulse serve --data-dir data

test: ## start what the tests need (ClickHouse, Postgres, Redis, NATS, Alertmanager, Chromium), run every Go test with -race, then the TypeScript client's tests
	scripts/test.sh

soak: ## the fault suite again and again under load for SOAK_DURATION (default 10m), then a table: fault, events sent, accepted, stored, duplicated, lost
	scripts/test.sh -tags chdb,soak -run '^TestSoak$$' -timeout 60m -v ./cmd/pulse/

bench: ## end-to-end and raw-limit benchmarks against the ClickHouse server, plus hot-path micro-benchmarks
	scripts/bench.sh

cover: ## per-package test coverage
	scripts/test.sh -cover

lint: ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags chdb ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) -tags chdb ./...

dashboard: ## rebuild the /admin page's bundle (uPlot from npm + internal/dashboard/ui/src) into internal/dashboard/assets
	cd internal/dashboard/ui && npm ci --no-audit --no-fund --ignore-scripts && node build.mjs
