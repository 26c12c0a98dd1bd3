# Cancelable for Go. `make test` is what CI runs (through .ci/run).
GO ?= go
JAEGER_BIN ?= $(CURDIR)/tools/bin/jaeger
CANCELDEMO_BIN ?= $(CURDIR)/bin/canceldemo
# Modules besides the library: the demo, and the test tooling that library
# users never download.
MODULES := cmd/canceldemo tools tools/stack tools/dashboards

.PHONY: demo test unit e2e lint bench fuzz fmt jaeger node canceldemo up down dashboards

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

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./... | tee bench.txt

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
