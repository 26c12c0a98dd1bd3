# Cancelable for Go. `make test` is what CI runs (through .ci/run).
GO ?= go
JAEGER_BIN ?= $(CURDIR)/tools/bin/jaeger
CANCELDEMO_BIN ?= $(CURDIR)/bin/canceldemo
# Clients of the load-and-faults harness in `make e2e` (CI's run); 200000
# takes about 90 s on two cores.
HARNESS_N ?= 20000
# Modules besides the library: the demo, and the test tooling that library
# users never download.
MODULES := cmd/canceldemo tools tools/stack tools/dashboards tools/perf

.PHONY: demo test unit e2e lint bench bench-pairs fuzz fmt jaeger node canceldemo up down dashboards

# The demo service with its embedded trace viewer; no Jaeger needed.
demo:
	cd cmd/canceldemo && $(GO) run . serve

# Everything: formatting, vet, unit tests with the race detector, and the
# end-to-end tests against real Jaeger, Prometheus, promtool and Node clients.
test: lint unit e2e

unit:
	$(GO) test -race -count=1 ./...
	cd cmd/canceldemo && $(GO) test -race -count=1 ./...

# Jaeger is built from source as a Go tool of its own module (a few minutes
# the first time); promtool and prometheus come from Debian's prometheus
# package; the websocket and EventSource clients from npm (tools/node).
e2e: jaeger node
	cd tools && JAEGER_BIN=$(JAEGER_BIN) $(GO) test -race -count=1 ./...
	cd tools/stack && $(GO) test -count=1 ./...
	cd tools/dashboards && $(GO) test -race -count=1 ./...
	cd cmd/canceldemo && $(GO) run . harness -n $(HARNESS_N) -c 256 -seed 1

jaeger: $(JAEGER_BIN)

$(JAEGER_BIN): tools/jaeger/go.mod tools/jaeger/go.sum
	cd tools/jaeger && $(GO) build -o $(JAEGER_BIN) github.com/jaegertracing/jaeger/cmd/jaeger

node: tools/node/node_modules/.package-lock.json

tools/node/node_modules/.package-lock.json: tools/node/package.json tools/node/package-lock.json
	cd tools/node && npm ci --no-audit --no-fund

# The binary the Dockerfile builds, byte for byte (tools/stack checks).
canceldemo:
	cd cmd/canceldemo && CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags=-buildid= -o $(CANCELDEMO_BIN) .

# The inspection stack (needs a Docker engine): demo, load, Jaeger,
# Prometheus, Grafana.
up:
	docker compose up --build -d
	@echo "Grafana http://localhost:3000  Jaeger http://localhost:16686  Prometheus http://localhost:9090  demo http://localhost:8080"

down:
	docker compose down

# Regenerates the Grafana dashboards from code (tools/dashboards).
dashboards:
	cd tools/dashboards && $(GO) run ./cmd/gen

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	for m in $(MODULES); do (cd $$m && $(GO) vet ./...) || exit 1; done

# Every benchmark of the library beside its baseline, in interleaved rounds
# (each round runs every package's benchmarks once, so that both halves of
# a pair see the same load), the verdicts against the issues' targets
# (tools/perf/cmd/benchpairs), the scale benchmarks (100,000 live
# operations in a registry, 10,000 idle SSE streams and websockets), and
# the loopback load run (tools/perf/cmd/httpload: wrk if installed, else a
# Go client). Results in $(BENCH_DIR).
BENCH_DIR ?= $(CURDIR)/bench
BENCH_ROUNDS ?= 6
BENCH_PKGS := cancel otelcancel httpcancel sse wscancel
BENCH_RE_cancel := ^Benchmark(StartEnd|Timeout|Check|Progress|Registry|Seq|Chan)$$
BENCH_RE_otelcancel := ^BenchmarkOTel$$
BENCH_RE_httpcancel := ^BenchmarkMiddleware(Handler)?$$
BENCH_RE_sse := ^BenchmarkSSE(InProcess)?$$
BENCH_RE_wscancel := ^BenchmarkWS$$
LOAD_FLAGS ?= -rounds 5 -duration 10s -warmup 2s -connections 32 -threads 2

bench: bench-pairs
	cd httpcancel && $(BENCH_DIR)/httpcancel.test -test.run '^$$' -test.bench '^Benchmark(TimeoutLateness|DisconnectDetection)$$' -test.benchtime 200x > $(BENCH_DIR)/latency.txt
	cd cancel && $(BENCH_DIR)/cancel.test -test.run '^$$' -test.bench '^BenchmarkRegistryScale$$' -test.benchtime 3x -test.count 3 -test.benchmem > $(BENCH_DIR)/scale_registry.txt
	cd sse && $(BENCH_DIR)/sse.test -test.run '^$$' -test.bench '^BenchmarkSSEScale$$' -test.benchtime 1x -test.count 3 > $(BENCH_DIR)/scale_sse.txt
	cd wscancel && $(BENCH_DIR)/wscancel.test -test.run '^$$' -test.bench '^BenchmarkWSScale$$' -test.benchtime 1x -test.count 3 > $(BENCH_DIR)/scale_ws.txt
	cd tools/perf && $(GO) run ./cmd/httpload $(LOAD_FLAGS) > $(BENCH_DIR)/load.md
	@cd $(BENCH_DIR) && cat latency.txt pairs.md scale_*.txt load.md

# Only the interleaved rounds and the verdicts, for some packages:
# make bench-pairs BENCH_PKGS="otelcancel httpcancel" BENCH_ROUNDS=20
bench-pairs:
	@mkdir -p $(BENCH_DIR) && rm -f $(BENCH_DIR)/*.txt $(BENCH_DIR)/*.md
	$(foreach p,$(BENCH_PKGS),$(GO) test -c -o $(BENCH_DIR)/$(p).test ./$(p)/ &&) true
	for i in $$(seq $(BENCH_ROUNDS)); do \
	  $(foreach p,$(BENCH_PKGS),(cd $(p) && $(BENCH_DIR)/$(p).test -test.run '^$$' -test.bench '$(BENCH_RE_$(p))' -test.benchmem -test.count 1) >> $(BENCH_DIR)/bench_$(p).txt || exit 1;) \
	done
	cd tools/perf && $(GO) run ./cmd/benchpairs $(foreach p,$(BENCH_PKGS),$(BENCH_DIR)/bench_$(p).txt) > $(BENCH_DIR)/pairs.md
	@cat $(BENCH_DIR)/pairs.md

# Every fuzz target of the library, FUZZTIME each.
FUZZTIME ?= 30s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

fmt:
	gofmt -w .
