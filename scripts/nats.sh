#!/usr/bin/env bash
# Makes sure a 3-node NATS JetStream cluster answers on loopback for the change feed's
# export tests (package jetstream, chaos TestNATS*), then prints `export` lines for it on
# stdout:
#
#   eval "$(scripts/nats.sh)"      # sets the variables below
#   scripts/nats.sh stop           # stop the three nats-server processes started here
#   scripts/nats.sh build          # only build nats-server
#
# Printed variables:
#   RESERVATION_TEST_NATS_URLS    the three nodes' client URLs, comma-separated
#   RESERVATION_TEST_NATS_SERVER  the nats-server binary (tests that kill and restart nodes
#                                 start clusters of their own with it)
#
# What it does when something is missing:
#   1. builds nats-server $NATS_VERSION from the Go module proxy with `go install` into
#      .local/nats/bin (a minute or two the first time; the Go build cache keeps later
#      builds short). The system's nats-server (2.9) is not used: the export needs a
#      stream's FirstSeq (2.10) and deduplication across a leader change (2.11);
#   2. starts three nodes n1..n3 of cluster "rsv" with JetStream, client, cluster and
#      monitoring ports chosen free on 127.0.0.1 and kept in .local/nats/ports, data in
#      .local/nats/n*/ (log: .local/nats/n*.log).
# Nodes already started by this script are reused while they all answer.
#
# Knobs (environment): RSV_NATS_WAIT_SECONDS bounds the wait for the cluster (default 60).
set -euo pipefail
shopt -s inherit_errexit
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR="$ROOT/.local/nats"
BIN="$DIR/bin"
SERVER="$BIN/nats-server"
PORTFILE="$DIR/ports" # one line per node: client cluster monitor
NATS_VERSION=v2.15.3
WAIT_SECONDS=${RSV_NATS_WAIT_SECONDS:-60}
GO=${GO:-go}
NODES=(n1 n2 n3)

build() {
  if [ -x "$SERVER" ] && [ "$(cat "$BIN/.version" 2>/dev/null || true)" = "$NATS_VERSION" ]; then
    return
  fi
  command -v "$GO" >/dev/null || die "go not found: it builds nats-server"
  log "building nats-server $NATS_VERSION into $BIN (a minute or two the first time)"
  mkdir -p "$BIN"
  local tmp started=$SECONDS
  tmp=$(mktemp -d)
  # From an empty folder: outside our module, so that nothing is added to our go.mod.
  (cd "$tmp" && GOWORK=off GOFLAGS=-buildvcs=false GOBIN="$BIN" nice -n 10 "$GO" install "github.com/nats-io/nats-server/v2@$NATS_VERSION") ||
    { rmdir "$tmp"; die "go install nats-server@$NATS_VERSION failed"; }
  rmdir "$tmp"
  echo "$NATS_VERSION" >"$BIN/.version"
  log "built nats-server in $((SECONDS - started)) s"
}

# healthy PORT: the node's monitoring port says JetStream is up and current.
healthy() {
  local out
  out=$( (exec 5<>"/dev/tcp/127.0.0.1/$1" && printf 'GET /healthz HTTP/1.0\r\n\r\n' >&5 && cat <&5) 2>/dev/null) || return 1
  [[ $out == *'"status":"ok"'* ]]
}

all_healthy() {
  [ -s "$PORTFILE" ] || return 1
  local c k m
  while read -r c k m; do healthy "$m" || return 1; done <"$PORTFILE"
}

urls() {
  local c k m out=
  while read -r c k m; do out+="${out:+,}nats://127.0.0.1:$c"; done <"$PORTFILE"
  echo "$out"
}

start() {
  build
  if all_healthy; then
    log "reusing the cluster on $(urls)"
    return
  fi
  stop
  # free_port runs in this shell (not in $(...)), so that no port is handed out twice.
  { for _ in "${NODES[@]}" "${NODES[@]}" "${NODES[@]}"; do free_port; done; } >"$PORTFILE.new"
  paste -d' ' - - - <"$PORTFILE.new" >"$PORTFILE"
  rm -f "$PORTFILE.new"
  local routes= c k m i=0
  while read -r c k m; do routes+="${routes:+, }\"nats-route://127.0.0.1:$k\""; done <"$PORTFILE"
  while read -r c k m; do
    local n=${NODES[$i]}
    i=$((i + 1))
    mkdir -p "$DIR/$n"
    cat >"$DIR/$n.conf" <<EOF
server_name: $n
listen: 127.0.0.1:$c
http: 127.0.0.1:$m
jetstream { store_dir: "$DIR/$n" }
cluster { name: rsv, listen: 127.0.0.1:$k, routes: [$routes] }
EOF
    : >"$DIR/$n.log"
    setsid "$SERVER" -c "$DIR/$n.conf" </dev/null >>"$DIR/$n.log" 2>&1 3>&- 9>&- &
    echo $! >"$DIR/$n.pid"
  done <"$PORTFILE"
  log "starting nats-server $NATS_VERSION n1..n3 on $(urls) (logs: $DIR/n*.log)"
  local deadline=$((SECONDS + WAIT_SECONDS))
  until all_healthy; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "the cluster did not come up within ${WAIT_SECONDS}s; last lines of $DIR/n1.log:"
      tail -n 30 "$DIR/n1.log" >&2 || true
      stop
      exit 1
    fi
    sleep 0.5
  done
}

stop() {
  local n
  for n in "${NODES[@]}"; do
    stop_pidfile "nats-server $n" "$DIR/$n.pid" 10
  done
}

main() {
  local cmd=up
  for arg in "$@"; do
    case $arg in
      up) cmd=up ;;
      stop) cmd=stop ;;
      build) cmd=build ;;
      -h | --help) usage; exit 0 ;;
      *) usage; die "unknown argument: $arg" ;;
    esac
  done
  mkdir -p "$DIR"
  take_lock "$DIR/.lock" 120
  case $cmd in
    stop) stop; return ;;
    build) build ;;
    up)
      start
      emit RESERVATION_TEST_NATS_URLS "$(urls)"
      ;;
  esac
  emit RESERVATION_TEST_NATS_SERVER "$SERVER"
}

main "$@"
