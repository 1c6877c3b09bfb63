# Developer entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

# Starts/finds MySQL and Redis and exports their addresses into the recipe
# line's shell (scripts/services.sh prints `export` lines). Assigning first
# and eval'ing second makes a failing services.sh fail the recipe: a bare
# `eval "$$(scripts/services.sh)"` would succeed with nothing exported.
# Use it at the start of a line: `$(SERVICES_ENV) && command`.
SERVICES_ENV = svc_env=$$(bash scripts/services.sh) && eval "$$svc_env"

GO ?= go

.PHONY: run test fuzz chaos build lint proto services services-stop alerts

## run: start the server locally against MySQL/Redis from scripts/services.sh
run:
	$(SERVICES_ENV) && $(GO) run ./cmd/reservationd --lock redis

## test: vet, then all tests with the race detector against real MySQL/Redis
# -race needs cgo, so force it on in case the environment turned it off.
test:
	$(SERVICES_ENV) && $(GO) vet ./... && CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 30m ./...
	$(MAKE) --no-print-directory fuzz FUZZTIME=5s

## fuzz: run each fuzz target for FUZZTIME (the seeds under testdata/fuzz also run in every go test)
FUZZTIME ?= 30s
FUZZ_TARGETS = FuzzPageToken FuzzTimestamp FuzzReserve
fuzz:
	for target in $(FUZZ_TARGETS); do \
	  $(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) ./service/ || exit 1; \
	done

## chaos: the fault-injection suite, three rounds of every fault (make test runs one)
chaos:
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 10m -v -run TestChaos ./chaos -args -rounds 3

## build: binaries of ./cmd/... into bin/
build:
	mkdir -p bin
	$(GO) build -o bin/ ./cmd/...

## lint: gofmt must have nothing to change, and go vet must pass
lint:
	@unformatted=$$(gofmt -l .); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed on:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

## alerts: promtool check rules and test rules on ops/prometheus (make test runs them too, in go test ./ops)
alerts:
	promtool=$$(bash scripts/promtool.sh) && cd ops/prometheus && "$$promtool" check rules alerts.yml && "$$promtool" test rules alerts_test.yml

## proto: regenerate Go code from proto/
proto:
	bash scripts/proto.sh

## services: print the export lines for MySQL/Redis (starting them if needed)
services:
	bash scripts/services.sh

## services-stop: stop the private MySQL/Redis started under .local/
services-stop:
	bash scripts/services.sh stop
