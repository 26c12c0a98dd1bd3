// Package e2e runs the library against the real components its users run:
// Jaeger receiving traces over OTLP and answering queries.
package e2e
