# epoch-dedup: make help lists the targets.
SHELL := /usr/bin/env bash
TOOLS_DIR ?= $(HOME)/.cache/epoch-dedup-tools
GOLANGCI_LINT_VERSION := v2.15.0
GOFUMPT_VERSION := v0.9.2
BIN := bin/epoch-dedup

.PHONY: help build test test-short demo bench lint fmt fmt-check fuzz s3-start s3-stop

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/epoch-dedup
	go build -o $(BIN) ./cmd/epoch-dedup

test: ## run every test: installs and starts a local S3 server (versitygw) for the S3 half
	scripts/test.sh

test-short: ## unit tests only, no S3 server, no race detector
	go test -count=1 -short ./...

demo: build ## push and pull sample snapshot revisions on the embedded default store and print the savings
	$(BIN) demo

bench: build ## run the savings/speed benchmarks (bench/RESULTS.md explains the output)
	scripts/bench.sh

fuzz: ## run every fuzz target for a bounded time (FUZZTIME, default 10s each)
	scripts/fuzz.sh

lint: ## golangci-lint (pinned) with depguard layering rules
	@test -x $(TOOLS_DIR)/bin/golangci-lint || GOBIN=$(TOOLS_DIR)/bin go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	$(TOOLS_DIR)/bin/golangci-lint run ./...

fmt: ## format with gofumpt
	@test -x $(TOOLS_DIR)/bin/gofumpt || GOBIN=$(TOOLS_DIR)/bin go install mvdan.cc/gofumpt@$(GOFUMPT_VERSION)
	$(TOOLS_DIR)/bin/gofumpt -w .

fmt-check: ## fail if a file is not gofumpt-formatted
	@test -x $(TOOLS_DIR)/bin/gofumpt || GOBIN=$(TOOLS_DIR)/bin go install mvdan.cc/gofumpt@$(GOFUMPT_VERSION)
	@out=$$($(TOOLS_DIR)/bin/gofumpt -l .); if [ -n "$$out" ]; then echo "not gofumpt-formatted:"; echo "$$out"; exit 1; fi

s3-start: ## start the local S3 test server and print its env
	scripts/s3-server.sh start

s3-stop: ## stop the local S3 test server
	scripts/s3-server.sh stop
