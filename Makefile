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

# make bench: a short run of every goim-bench scenario against the one-process
# server (goim-bench starts it), results in BENCH_OUT (not benchmarks/results).
BENCH_OUT ?= bin/bench-short
BENCH     := ./bin/goim-bench
BENCH_MSG := -duration 3s -drain 15s -out $(BENCH_OUT)

.PHONY: bench
bench: build ## short run of every benchmark scenario on the one-process server (< 3 min; results and charts in BENCH_OUT)
	@mkdir -p $(BENCH_OUT) && rm -f $(BENCH_OUT)/*.json $(BENCH_OUT)/*.svg
	$(BENCH) conns -n 1000 -rate 2000 -heartbeat 2s -settle 3s -samples 2 -hold 5s -out $(BENCH_OUT)
	$(BENCH) conns -n 300 -transport ws -rate 1000 -heartbeat 2s -settle 2s -samples 1 -out $(BENCH_OUT)
	$(BENCH) room -n 200 -rates 10,100 -duration 2s -quiet 2s -drain 15s -out $(BENCH_OUT)
	$(BENCH) room -n 1000 -rates 10,100 -duration 2s -quiet 2s -drain 15s -out $(BENCH_OUT)
	$(BENCH) chat -pairs 50 -in-flight 2 $(BENCH_MSG)
	$(BENCH) chat -pairs 50 -msg-rate 500 $(BENCH_MSG)
	$(BENCH) chat -pairs 50 -msg-rate 2000 $(BENCH_MSG)
	$(BENCH) group -members 50 -senders 4 -in-flight 2 $(BENCH_MSG)
	$(BENCH) history -conversations 10 -messages 100 -readers 4 -read-duration 3s -out $(BENCH_OUT)
	$(BENCH) report -results $(BENCH_OUT) -readme $(BENCH_OUT)/README.md -stdout > $(BENCH_OUT)/README.md
	@echo "bench: results, tables and charts in $(BENCH_OUT)/ (README.md)"

.PHONY: bench-micro
bench-micro: ## run the Go micro-benchmarks (codec, comet fan-out, job batching)
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# make bench-full: the full set on the local cluster. $(CLUSTER_SH) up must
# start it (at least 6 comets, FULL_N users seeded: it gets BENCH_USERS) and
# `$(CLUSTER_SH) env` must print shell assignments of GOIM_COMET_ADDRS,
# GOIM_COMET_WS_ADDRS, GOIM_COMET_PIDS (comma separated), GOIM_HTTP_ADDR,
# GOIM_JWT_SECRET, GOIM_BENCH_USERS (a FIRST-LAST range or a `goim users seed`
# output file) and optionally GOIM_ADMIN_KEY; `$(CLUSTER_SH) down` stops it
# (also after a failure or Ctrl-C). Results go to benchmarks/results/.
CLUSTER_SH ?= deploy/cluster.sh
FULL_N     ?= 100000
FULL_OUT   ?= benchmarks/results
FULL_HOLD  ?= 5m
FULL_README ?= benchmarks/README.md
FULL_CHAT_RATES ?= 1000 2000 5000 10000

.PHONY: bench-full
bench-full: build ## full benchmark set on the local cluster (deploy/cluster.sh, 6 comets, FULL_N=100000 connections held 5 min)
	@if [ ! -x $(CLUSTER_SH) ]; then echo "bench-full: $(CLUSTER_SH) is missing or not executable: it starts the local cluster (make cluster); see benchmarks/README.md" >&2; exit 1; fi
	@set -- $$(cat /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 0 65535); \
	if [ $$(( $$2 - $$1 )) -lt 50000 ]; then echo "bench-full: WARNING: ip_local_port_range is $$1-$$2: loopback connections stall near 85,000 over 6 comets; widen it: sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"" >&2; fi
	@set -e; \
	trap '$(CLUSTER_SH) down' EXIT; \
	GOIM_SEND_RATE=-1 BENCH_USERS=$(FULL_N) $(CLUSTER_SH) up; \
	eval "$$($(CLUSTER_SH) env)"; \
	for v in GOIM_COMET_ADDRS GOIM_COMET_WS_ADDRS GOIM_COMET_PIDS GOIM_HTTP_ADDR GOIM_JWT_SECRET GOIM_BENCH_USERS; do \
	  eval "test -n \"\$$$$v\"" || { echo "bench-full: $(CLUSTER_SH) env did not set $$v" >&2; exit 1; }; done; \
	comets=$$(echo "$$GOIM_COMET_ADDRS" | tr ',' '\n' | grep -c .); \
	if [ "$$comets" -lt 6 ]; then echo "bench-full: $$comets comets, want at least 6" >&2; exit 1; fi; \
	export GOIM_JWT_SECRET GOIM_ADMIN_KEY; \
	X="-addrs $$GOIM_COMET_ADDRS -ws-addrs $$GOIM_COMET_WS_ADDRS -pids $$GOIM_COMET_PIDS -http $$GOIM_HTTP_ADDR -users $$GOIM_BENCH_USERS -out $(FULL_OUT)"; \
	$(BENCH) conns -n $(FULL_N) -rate 1000 -settle 60s -hold $(FULL_HOLD) $$X; \
	min() { [ $$1 -lt $$2 ] && echo $$1 || echo $$2; }; \
	$(BENCH) conns -n $$(min 15000 $(FULL_N)) -transport ws -rate 1000 $$X; \
	$(BENCH) room -n $$(min 1000 $(FULL_N)) -rates 10,100,1000 -duration 10s $$X; \
	$(BENCH) room -n $$(min 10000 $(FULL_N)) -rates 10,100,1000 -duration 10s $$X; \
	$(BENCH) room -n $(FULL_N) -rates 1,10,20,50 -duration 10s $$X; \
	$(BENCH) chat -pairs 500 -in-flight 4 -duration 15s $$X; \
	for r in $(FULL_CHAT_RATES); do $(BENCH) chat -pairs 500 -msg-rate $$r -duration 15s -drain 30s $$X; done; \
	$(BENCH) group -members 500 -senders 8 -in-flight 2 -duration 15s $$X; \
	$(BENCH) history -conversations 100 -messages 1000 -readers 32 -read-duration 10s $$X; \
	$(BENCH) report -results $(FULL_OUT) -readme $(FULL_README)

.PHONY: bench-conns
bench-conns: build ## RSS per idle authenticated connection (N=15000 by default)
	./bin/goim-bench conns -n $${N:-15000}

.PHONY: bench-room
bench-room: build ## room fan-out at 10, 100 and 1000 pushes/s (N=15000 connections by default)
	./bin/goim-bench room -n $${N:-15000} -rates 10,100,1000

KITEX_MODULE := github.com/goimdev/goim
KITEX_IDL    := idl/goim.thrift

.PHONY: gen
gen: ## regenerate the Kitex code in idl/kitex_gen from idl/goim.thrift (kitex pinned in go.mod)
	rm -rf idl/kitex_gen
	$(GO) tool kitex -module $(KITEX_MODULE) -gen-path idl/kitex_gen $(KITEX_IDL)

.PHONY: gen-check
gen-check: ## fail if idl/kitex_gen differs from what `make gen` would write
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(GO) build -o "$$tmp/kitex" github.com/cloudwego/kitex/tool/cmd/kitex && \
	mkdir -p "$$tmp/m/idl" && cp go.mod "$$tmp/m/" && cp idl/*.thrift "$$tmp/m/idl/" && \
	(cd "$$tmp/m" && "$$tmp/kitex" -module $(KITEX_MODULE) -gen-path idl/kitex_gen $(KITEX_IDL) >/dev/null) && \
	if diff -r idl/kitex_gen "$$tmp/m/idl/kitex_gen"; then echo "idl/kitex_gen is up to date"; \
	else echo "idl/kitex_gen is stale: run make gen"; exit 1; fi

.PHONY: lint
lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

.PHONY: tidy
tidy: ## go mod tidy
	$(GO) mod tidy

.PHONY: cluster
cluster: build ## run a local cluster of real processes in the foreground: 2 comets, 1 logic, 2 jobs on MariaDB/Redis, kfake and embedded etcd (Ctrl-C stops it)
	./bin/goim cluster --dir data/cluster

.PHONY: clean
clean: ## remove build outputs and the default data directory
	rm -rf bin $(DATA_DIR)
