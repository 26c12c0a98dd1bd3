// Package stack checks the inspection stack without a Docker engine:
// docker-compose.yml loaded and validated by compose-go (the library
// docker compose itself uses), its references checked against the files
// and services they name, and the Dockerfile's build run here to show it
// builds the binary `go build` does.
package stack
