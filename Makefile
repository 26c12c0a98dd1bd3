# Cancelable for Go. `make test` is what CI runs.
GO ?= go
PKGS := ./...

.PHONY: demo test lint bench fmt

demo:
	$(GO) run ./cmd/canceldemo

test: lint
	$(GO) test -race -count=1 $(PKGS)

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 6 $(PKGS) | tee bench.txt

fmt:
	gofmt -w .
