# The demo service and load generator (cmd/canceldemo), as docker-compose.yml
# runs them. The binary is what `make canceldemo` builds: the same command,
# flags and environment (tools/e2e checks that they agree).
FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first, so that a change of code does not download them again.
COPY go.mod go.sum ./
COPY cmd/canceldemo/go.mod cmd/canceldemo/go.sum ./cmd/canceldemo/
RUN cd cmd/canceldemo && go mod download
COPY . .
RUN cd cmd/canceldemo && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags=-buildid= -o /out/canceldemo .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/canceldemo /canceldemo
EXPOSE 8080
USER nonroot
ENTRYPOINT ["/canceldemo"]
CMD ["serve", "-addr", ":8080"]
