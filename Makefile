# GoIM — `make help` lists the targets.
GO       ?= go
PKGS     ?= ./...
DATA_DIR ?= ./data
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/goimdev/goim/internal/cli.version=$(VERSION)
FUZZTIME ?= 30s

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: ## run GoIM in one process on the embedded backends (TCP :3101, WS :3102, HTTP :3111)
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/goim standalone --data-dir $(DATA_DIR)

.PHONY: build
build: ## build bin/goim and bin/goim-bench
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/goim ./cmd/goim
	$(GO) build -o bin/goim-bench ./benchmarks/cmd/goim-bench

.PHONY: test
test: ## run every test with the race detector (MySQL/Redis suites run when GOIM_TEST_* are set)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

.PHONY: test-short
test-short: ## run the tests without the race detector
	$(GO) test -count=1 $(PKGS)

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME each (default 30s)
	@$(GO) list -f '{{.ImportPath}} {{.Dir}}' $(PKGS) | while read pkg dir; do \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; done

.PHONY: bench
bench: ## run the Go micro-benchmarks (codec, comet fan-out, job batching)
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

.PHONY: bench-conns
bench-conns: build ## RSS per idle authenticated connection (N=15000 by default)
	./bin/goim-bench conns -n $${N:-15000}

.PHONY: bench-room
bench-room: build ## room fan-out at 10, 100 and 1000 pushes/s (N=15000 connections by default)
	./bin/goim-bench room -n $${N:-15000} -rates 10,100,1000

.PHONY: lint
lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

.PHONY: tidy
tidy: ## go mod tidy
	$(GO) mod tidy

.PHONY: clean
clean: ## remove build outputs and the default data directory
	rm -rf bin $(DATA_DIR)
