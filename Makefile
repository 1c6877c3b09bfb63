# Developer entry points. `make check` is the quick check before pushing (no server needed);
# `make test` is what CI runs (.ci/run), after `make check`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

# Starts/finds MySQL and Redis and exports their addresses into the recipe
# line's shell (scripts/services.sh prints `export` lines). Assigning first
# and eval'ing second makes a failing services.sh fail the recipe: a bare
# `eval "$$(scripts/services.sh)"` would succeed with nothing exported.
# Use it at the start of a line: `$(SERVICES_ENV) && command`.
SERVICES_ENV = svc_env=$$(bash scripts/services.sh) && eval "$$svc_env"

# The same for the MySQL 9.7 server of scripts/mysql97.sh (installed into a
# Debian sid chroot under .local/mysql97 on first use). Put it after
# $(SERVICES_ENV): it overrides the test DSN that services.sh set.
MYSQL97_ENV = m97_env=$$(bash scripts/mysql97.sh) && eval "$$m97_env"

GO ?= go
GOTEST = CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 30m

# Prints the packages whose tests use the database (they import
# repo/repotest, directly or not): the legs on other engines run only these.
DB_PACKAGES = $(GO) list -test -f '{{.ImportPath}} {{join .Deps ","}},' ./... | \
  grep -E '^[^ ]+\.test .*[ ,]reservation/repo/repotest( \[[^]]*\])?,' | \
  cut -d' ' -f1 | sed 's/\.test$$//'

# leg NAME COMMAND: a banner, COMMAND, then its wall time and exit status, so
# that CI logs show the time of each engine's leg; fails if COMMAND did.
leg = echo "==== $(1): start $$(date -u +%FT%TZ)"; leg_t0=$$(date +%s); \
  if $(2); then leg_rc=0; else leg_rc=$$?; fi; \
  echo "==== $(1): $$(( $$(date +%s) - leg_t0 )) s wall, exit $$leg_rc"; \
  exit $$leg_rc

.PHONY: alerts run reset check buf-lint buf-breaking test test-mariadb test-mysql97 test-vitess test-galera galera-stop test-gr gr-stop fuzz chaos build lint proto services services-stop

## run: start the server locally against MySQL/Redis from scripts/services.sh --run
# A RESERVATION_MYSQL_DSN or RESERVATION_REDIS_ADDR set by the user is used as
# it is: services.sh --run then neither looks for nor installs that server. It
# installs only what running needs (not the tests' redis-sentinel) and prints
# the addresses reservationd will use. The binary is built, then exec'd: it
# replaces the recipe's shell, so a signal to make (which passes it to its
# child) reaches the server itself, and no orphan keeps the ports.
run:
	run_env=$$(bash scripts/services.sh --run) && eval "$$run_env" && \
	mkdir -p bin && $(GO) build -o bin/reservationd ./cmd/reservationd && \
	exec bin/reservationd --lock redis

## reset: empty the database `make run` uses (stop `make run` first; it migrates again at start)
reset:
	bash scripts/services.sh reset

## check: gofmt, go vet, buf lint, and every test that needs no server (under a minute once built)
# The tests that need a server (MySQL, Redis, a private MariaDB, the built daemon) skip under
# -short: the test helpers (repotest, locktest, redistest, startDaemon) skip before they start
# anything. make test never passes -short, so there each of them runs or fails. ./chaos is left
# out: each of its tests starts servers.
CHECK_PACKAGES = $(GO) list ./... | grep -v '/chaos$$'
check:
	@unformatted=$$(gofmt -l .); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed on:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	bash scripts/buf.sh lint
	pkgs=$$($(CHECK_PACKAGES)) && $(GO) test -short -count=1 $$pkgs

## buf-lint: buf lint of proto/ (buf.yaml: STANDARD, with the design document's names excepted)
buf-lint:
	bash scripts/buf.sh lint

## buf-breaking: buf breaking of proto/ against the previous commit on main (scripts/buf.sh says which)
buf-breaking:
	bash scripts/buf.sh breaking

## test: go vet, buf lint and breaking, then every leg: all tests on MariaDB (services.sh), the
## database tests on MySQL 9.7, Vitess, failover, Galera, Group Replication, NATS, then fuzz
# Every leg runs even when one before it failed, so that one CI run shows every engine; the
# target fails if any did. -race needs cgo: GOTEST forces it on. Under CI=true the servers the
# legs started (private MariaDB/Redis, MySQL 9.7) are stopped at the end, whatever calls make;
# outside CI they are kept for the next run (`make services-stop` stops them).
test:
	$(GO) vet ./...
	bash scripts/buf.sh lint
	bash scripts/buf.sh breaking
	if [ "$${CI:-}" = true ]; then \
	  trap 'bash scripts/services.sh stop || true; bash scripts/mysql97.sh stop || true' EXIT; \
	fi; \
	status=0; \
	$(MAKE) --no-print-directory test-mariadb || status=1; \
	$(MAKE) --no-print-directory test-mysql97 || status=1; \
	$(MAKE) --no-print-directory test-vitess || status=1; \
	$(MAKE) --no-print-directory test-failover || status=1; \
	$(MAKE) --no-print-directory test-galera || status=1; \
	$(MAKE) --no-print-directory test-gr || status=1; \
	$(MAKE) --no-print-directory test-nats || status=1; \
	$(MAKE) --no-print-directory fuzz FUZZTIME=5s || status=1; \
	exit $$status

## test-mariadb: every test against the MySQL/MariaDB and Redis of scripts/services.sh
test-mariadb:
	@$(call leg,MariaDB leg (scripts/services.sh),$(SERVICES_ENV) && $(GOTEST) ./...)

## test-mysql97: the database tests against Oracle MySQL 9.7 (scripts/mysql97.sh), Redis from services.sh
# (under CI=true the server is stopped afterwards: it holds ~700 MB)
test-mysql97:
	@trap 'if [ "$${CI:-}" = true ]; then bash scripts/mysql97.sh stop || true; fi' EXIT; \
	$(call leg,MySQL 9.7 leg (scripts/mysql97.sh),$(SERVICES_ENV) && $(MYSQL97_ENV) && \
	  pkgs=$$($(DB_PACKAGES)) && echo "RESERVATION_TEST_MYSQL_DSN=$$RESERVATION_TEST_MYSQL_DSN; packages:" $$pkgs && \
	  $(GOTEST) $$pkgs)

## test-vitess: the Vitess tests (./chaos TestVitess*), three replicas through vtgate (scripts/vitess.sh
# builds vttestserver on first use, ~9-15 min, and starts it; `bash scripts/vitess.sh stop` stops it,
# as this target does itself under CI=true, like .ci/run does for scripts/services.sh)
test-vitess:
	@trap 'if [ "$${CI:-}" = true ]; then bash scripts/vitess.sh stop || true; fi' EXIT; \
	$(call leg,Vitess leg (scripts/vitess.sh),$(SERVICES_ENV) && vt_env=$$(bash scripts/vitess.sh) && eval "$$vt_env" && \
	  $(GOTEST) -v -run '^TestVitess' ./chaos)

## test-galera: start (or reuse) a 3-node Galera cluster with scripts/galera.sh, then run the
## Galera tests in ./chaos: 3 replicas one per node with the Redis and the local lock, node
## faults, and the brute-force abort probe (they skip when RESERVATION_TEST_GALERA_DSNS is unset);
## under CI=true the cluster is stopped afterwards
test-galera:
	@trap 'if [ "$${CI:-}" = true ]; then bash scripts/galera.sh stop || true; fi' EXIT; \
	$(call leg,Galera leg (scripts/galera.sh),galera_env=$$(bash scripts/galera.sh) && eval "$$galera_env" && \
	  $(GOTEST) -v -run '^TestGalera' ./chaos)

## test-gr: start (or reuse) a 3-member MySQL 9.7 Group Replication group with scripts/mysqlgr.sh
## (in scripts/mysql97.sh's chroot), then run the Group Replication tests in ./chaos: single-primary
## (Redis up and unreachable; the primary SIGKILLed, switched over, leaving and rejoining), then
## multi-primary (one replica per member, certification conflicts), and the batch probe; they skip when
## RESERVATION_TEST_GR_DSNS is unset. Under CI=true the group is stopped afterwards.
test-gr:
	@trap 'if [ "$${CI:-}" = true ]; then bash scripts/mysqlgr.sh stop || true; fi' EXIT; \
	$(call leg,Group Replication leg (scripts/mysqlgr.sh),gr_env=$$(bash scripts/mysqlgr.sh single) && eval "$$gr_env" && \
	  $(GOTEST) -v -run '^TestGroupReplication' ./chaos)

## gr-stop: stop the Group Replication members scripts/mysqlgr.sh started
gr-stop:
	bash scripts/mysqlgr.sh stop

## galera-stop: stop the Galera nodes scripts/galera.sh started under .local/galera/
galera-stop:
	bash scripts/galera.sh stop

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

## test-failover: a primary and a replica (scripts/replication.sh): semi-sync, async and a
## switchover; the primary is killed (or set read_only) mid-load and the replica promoted
## while reservationd keeps running; then the async failover with the change feed exported to
## NATS JetStream, where the feed diverges (TestFailoverNATSExport: scripts/nats.sh build makes
## nats-server, the test starts a 3-node cluster of its own)
.PHONY: test-failover
test-failover:
	@$(call leg,Failover leg (scripts/replication.sh),nats_env=$$(bash scripts/nats.sh build) && eval "$$nats_env" && \
	  RESERVATION_TEST_FAILOVER=1 $(GOTEST) -v -run TestFailover ./chaos)

## test-nats: the change feed's export to NATS JetStream against a 3-node cluster (scripts/nats.sh
# builds nats-server v2.15.3 on first use, ~1-2 min, and starts it; `bash scripts/nats.sh stop`
# stops it, as CI does): package jetstream, the example consumer, rsvctl listen --from-nats, and
# the chaos runs with three reservationd replicas (TestNATS*). One package at a time (-p 1): the
# chaos runs start servers of their own and want the cores.
.PHONY: test-nats
test-nats:
	@trap 'if [ "$${CI:-}" = true ]; then bash scripts/nats.sh stop || true; fi' EXIT; \
	$(call leg,NATS leg (scripts/nats.sh),$(SERVICES_ENV) && nats_env=$$(bash scripts/nats.sh) && eval "$$nats_env" && \
	  $(GOTEST) -p 1 -v -run 'TestExport|TestPrune|TestNATS|TestFromNATS|TestConsumer' ./jetstream ./examples/... ./cmd/rsvctl ./chaos)

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

## services-stop: stop the private MySQL/Redis and the MySQL 9.7 started under .local/
services-stop:
	bash scripts/services.sh stop
	bash scripts/mysql97.sh stop
