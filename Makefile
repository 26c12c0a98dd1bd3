# Cancelable for Go. `make test` is what CI runs (through .ci/run).
GO ?= go
JAEGER_BIN ?= $(CURDIR)/tools/bin/jaeger

.PHONY: demo test unit e2e lint bench fmt jaeger

demo:
	$(GO) run ./cmd/canceldemo

# Everything: formatting, vet, unit tests with the race detector, and the
# end-to-end tests against real Jaeger and promtool.
test: lint unit e2e

unit:
	$(GO) test -race -count=1 ./...

# Jaeger is built from source as a Go tool of the tools module (a few
# minutes the first time); promtool comes from Debian's prometheus package.
e2e: jaeger
	cd tools && JAEGER_BIN=$(JAEGER_BIN) $(GO) test -race -count=1 ./...

jaeger: $(JAEGER_BIN)

$(JAEGER_BIN): tools/jaeger/go.mod tools/jaeger/go.sum
	cd tools/jaeger && $(GO) build -o $(JAEGER_BIN) github.com/jaegertracing/jaeger/cmd/jaeger

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd tools && $(GO) vet ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./... | tee bench.txt

fmt:
	gofmt -w .
