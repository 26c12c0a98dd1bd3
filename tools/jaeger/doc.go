// Package jaeger only holds the module that builds Jaeger as a Go tool:
// go build -o bin/jaeger github.com/jaegertracing/jaeger/cmd/jaeger
package jaeger
