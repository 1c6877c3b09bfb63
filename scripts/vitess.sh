#!/usr/bin/env bash
# Makes sure a Vitess (vttestserver: vtgate, vttablet and a MariaDB under them, in one
# process tree) answers on loopback for the Vitess acceptance tests, then prints `export`
# lines for it on stdout:
#
#   eval "$(scripts/vitess.sh)"      # sets the variables below
#   scripts/vitess.sh stop           # stop the vttestserver started here
#
# Printed variables:
#   RESERVATION_TEST_VITESS_DSN   go-sql-driver DSN of vtgate, database = the keyspace
#                                 (one unsharded keyspace; vtgate cannot CREATE DATABASE,
#                                 so the tests use the keyspace as their database)
#
# What it does when something is missing:
#   1. builds vttestserver, vtcombo and mysqlctl of vitess.io/vitess@$VITESS_VERSION from
#      the Go module proxy into .local/vitess/bin (`go install` refuses that module, its
#      go.mod has an `exclude` line, so it builds inside a copy of the downloaded module;
#      ~9 minutes on 2 cores the first time, the Go build cache keeps later builds short);
#   2. prepares VTROOT (.local/vitess/vtroot) with copies of Vitess' config files edited
#      for MariaDB 10.11, whose mariadbd runs under it (VT_MYSQL_ROOT=/usr); when that user
#      cannot reach .local (a clone under /root), VTROOT, a copy of bin/ and the data go to
#      /var/tmp/reservation-vitess-*, which `stop` removes;
#   3. starts vttestserver with everything bound to 127.0.0.1, as the unprivileged user
#      $VITESS_USER (created with useradd if missing) because mysqlctl refuses root.
# A vttestserver already started by this script is reused while it answers.
#
# Knobs (environment): RSV_VITESS_WAIT_SECONDS bounds the wait for vtgate (default 300),
# RSV_VITESS_KEYSPACE the keyspace (default reservation), VITESS_USER the user (vitess).
set -euo pipefail
shopt -s inherit_errexit
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR="$ROOT/.local/vitess"
BIN="$DIR/bin"
# VTROOT (config, bin) and DATA are under RUN_DIR, which the user running vttestserver must
# be able to reach: $DIR, or a folder under /var/tmp when $DIR is not (a clone in /root).
RUN_DIR="$DIR"
VTROOT=
DATA=
LOG="$DIR/vttestserver.log"
PIDFILE="$DIR/vttestserver.pid"
PORTFILE="$DIR/vtgate.port"
VITESS_VERSION=v0.24.4
VITESS_USER=${VITESS_USER:-vitess}
KEYSPACE=${RSV_VITESS_KEYSPACE:-reservation}
WAIT_SECONDS=${RSV_VITESS_WAIT_SECONDS:-300}
GO=${GO:-go}

# ---------------------------------------------------------------- build ----

BINARIES=(vttestserver vtcombo mysqlctl)

build() {
  local missing=0 b
  for b in "${BINARIES[@]}"; do [ -x "$BIN/$b" ] || missing=1; done
  [ "$missing" = 0 ] && return
  command -v "$GO" >/dev/null || die "go not found: it builds Vitess"
  local src="$DIR/src" started=$SECONDS
  if [ "$(cat "$src/.version" 2>/dev/null || true)" != "$VITESS_VERSION" ]; then
    log "downloading vitess.io/vitess@$VITESS_VERSION through the Go module proxy"
    local json mod
    # From an empty folder: outside our module, so that nothing is added to our go.sum.
    local tmp
    tmp=$(mktemp -d)
    json=$(cd "$tmp" && GOWORK=off GOFLAGS= "$GO" mod download -json "vitess.io/vitess@$VITESS_VERSION") ||
      { rmdir "$tmp"; die "go mod download vitess.io/vitess@$VITESS_VERSION failed"; }
    rmdir "$tmp"
    mod=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [ -d "$mod" ] || die "go mod download gave no module directory: $json"
    # The module cache is read-only; build in a writable copy, never edit the cache.
    rm -rf "$src"
    cp -R "$mod" "$src"
    chmod -R u+w "$src"
    echo "$VITESS_VERSION" >"$src/.version"
  fi
  log "building ${BINARIES[*]} of Vitess $VITESS_VERSION into $BIN (9 to 15 min the first time on 2 shared cores)"
  mkdir -p "$BIN"
  local pkgs=()
  for b in "${BINARIES[@]}"; do pkgs+=("./go/cmd/$b"); done
  # -buildvcs=false: the copy sits inside this repository's work tree, whose VCS state is
  # not Vitess'. GOWORK=off: no go.work of ours applies to Vitess' module.
  (cd "$src" && GOWORK=off GOFLAGS=-buildvcs=false nice -n 10 "$GO" build -o "$BIN/" "${pkgs[@]}") ||
    die "building Vitess failed"
  log "built Vitess in $((SECONDS - started)) s"
}

# --------------------------------------------------------------- VTROOT ----

# VTROOT holds bin/ and config/ as vttestserver expects them. The config files are copies,
# edited for MariaDB 10.11, which has no super_read_only.
prepare_vtroot() {
  local src="$DIR/src"
  [ -d "$src/config" ] || die "$src/config missing: remove $BIN to rebuild"
  rm -rf "$VTROOT"
  mkdir -p "$VTROOT"
  cp -R "$src/config" "$VTROOT/config"
  if [ "$RUN_DIR" = "$DIR" ]; then ln -s "$BIN" "$VTROOT/bin"; else cp -R "$BIN" "$VTROOT/bin"; fi
  # Unknown to MariaDB: mariadbd would refuse to start. loose- makes it skip the option.
  sed -i 's/^super-read-only/loose-super-read-only/' "$VTROOT/config/mycnf/test-suite.cnf"
  # MariaDB has no @@global.super_read_only: drop the statements that read or set it.
  sed -i '/^SET .*super_read_only/d' "$VTROOT/config/init_db.sql"
  # Our own extra my.cnf: the underlying mysqld listens on loopback only.
  printf '[mysqld]\nbind-address = 127.0.0.1\n' >"$VTROOT/config/mycnf/loopback.cnf"
  chmod -R a+rX "$VTROOT" "$BIN"
}

# choose_run_dir: RUN_DIR, VTROOT and DATA, somewhere the vttestserver's user can reach.
choose_run_dir() {
  if is_root && ! runuser -u "$VITESS_USER" -- test -x "$DIR"; then
    RUN_DIR="/var/tmp/reservation-vitess-$(printf '%s' "$DIR" | cksum | cut -d' ' -f1)"
    log "user $VITESS_USER cannot reach $DIR: running from $RUN_DIR"
    mkdir -p "$RUN_DIR"
    chmod 755 "$RUN_DIR"
  fi
  echo "$RUN_DIR" >"$DIR/run_dir"   # for stop, which removes it when outside $DIR
  VTROOT="$RUN_DIR/vtroot"
  DATA="$RUN_DIR/data"
}

# ------------------------------------------------------------------ run ----

MYSQL_CLIENT=
ensure_mysql_client() {
  MYSQL_CLIENT=$(command -v mariadb || command -v mysql || true)
  [ -n "$MYSQL_CLIENT" ] || die "no mariadb/mysql client: run scripts/services.sh first, it installs one"
}

# vtgate_ping PORT: vtgate answers a query on the keyspace, so its tablet serves.
vtgate_ping() {
  "$MYSQL_CLIENT" --no-defaults --protocol=TCP --connect-timeout=3 -h 127.0.0.1 -P "$1" \
    -u root -D "$KEYSPACE" -e 'SELECT 1' >/dev/null 2>&1
}

# base_port: N such that N..N+3 are free (vtcombo http, grpc, mysqld, vtgate mysql).
base_port() {
  local p i ok
  for _ in $(seq 200); do
    p=$((10000 + RANDOM % 22000)) # below the ephemeral range (32768-60999): a client socket may hold any port there, and bind would fail
    ok=1
    for i in 0 1 2 3; do port_in_use $((p + i)) && { ok=0; break; }; done
    [ "$ok" = 1 ] && { echo "$p"; return; }
  done
  die "no four free consecutive TCP ports found"
}

ensure_user() {
  is_root || return 0
  getent passwd "$VITESS_USER" >/dev/null && return
  log "creating system user $VITESS_USER (mysqlctl refuses to run as root)"
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$VITESS_USER"
}

start() {
  ensure_mysql_client
  if pid_alive "$PIDFILE" && [ -s "$PORTFILE" ] && vtgate_ping "$(cat "$PORTFILE")"; then
    log "reusing vttestserver (pid $(cat "$PIDFILE")), vtgate on 127.0.0.1:$(cat "$PORTFILE")"
    return
  fi
  pid_alive "$PIDFILE" && stop
  build
  ensure_user
  choose_run_dir
  prepare_vtroot
  [ -x /usr/sbin/mariadbd ] || [ -x /usr/sbin/mysqld ] ||
    die "no /usr/sbin/mysqld: run scripts/services.sh first, it installs MariaDB"

  local base gate
  base=$(base_port)
  gate=$((base + 3))
  # A fresh data directory each start: the tests own the keyspace's tables anyway.
  rm -rf "$DATA"
  mkdir -p "$DATA"
  is_root && chown "$VITESS_USER" "$DATA"
  : >"$LOG"
  log "starting vttestserver: keyspace $KEYSPACE, vtgate on 127.0.0.1:$gate (log: $LOG)"
  local started=$SECONDS
  # setsid: its own process group, which `stop` signals as a whole, and no tie to the
  # caller's $(...) pipe (fd 3) or our lock (fd 9). It execs in place (we are not a group
  # leader), so $! is the group's id.
  local as_user=()
  is_root && as_user=(runuser -u "$VITESS_USER" --)
  setsid "${as_user[@]}" env HOME="$DATA" VTROOT="$VTROOT" VTDATAROOT="$DATA" VT_MYSQL_ROOT=/usr \
    "$VTROOT/bin/vttestserver" \
    --port "$base" --data-dir "$DATA" \
    --keyspaces "$KEYSPACE" --num-shards 1 --replica-count 1 --rdonly-count 0 \
    --mysql-bind-host 127.0.0.1 --vtcombo-bind-host 127.0.0.1 --grpc-bind-address 127.0.0.1 \
    --tablet-hostname 127.0.0.1 \
    --extra-my-cnf "$VTROOT/config/mycnf/loopback.cnf" \
    </dev/null >>"$LOG" 2>&1 3>&- 9>&- &
  local pid=$!
  echo "$pid" >"$PIDFILE"
  echo "$gate" >"$PORTFILE"
  local deadline=$((SECONDS + WAIT_SECONDS))
  until vtgate_ping "$gate"; do
    if [ "$SECONDS" -ge "$deadline" ] || ! kill -0 "$pid" 2>/dev/null; then
      log "vttestserver did not answer within ${WAIT_SECONDS}s; last lines of $LOG:"
      tail -n 40 "$LOG" >&2 || true
      stop
      exit 1
    fi
    sleep 1
  done
  log "vtgate answered after $((SECONDS - started)) s"
}

# ----------------------------------------------------------------- stop ----

stop() {
  if ! pid_alive "$PIDFILE"; then
    log "no vttestserver of ours running"
    remove_run_dir
    return
  fi
  local pid
  pid=$(cat "$PIDFILE")
  log "stopping vttestserver (process group $pid)"
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 60); do
    kill -0 -- "-$pid" 2>/dev/null || { rm -f "$PIDFILE"; remove_run_dir; return; }
    sleep 0.5
  done
  log "process group $pid still running after 30s, killing it"
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
  remove_run_dir
}

# remove_run_dir: the copy of the binaries and the data outside $DIR, if any.
remove_run_dir() {
  local run_dir
  run_dir=$(cat "$DIR/run_dir" 2>/dev/null || true)
  case $run_dir in
    /var/tmp/reservation-vitess-*) log "removing $run_dir"; rm -rf "$run_dir" ;;
  esac
  rm -f "$DIR/run_dir"
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
  # The first build takes minutes: a second caller waits for it.
  take_lock "$DIR/.lock" 1800
  case $cmd in
    up)
      start
      emit RESERVATION_TEST_VITESS_DSN "root@tcp(127.0.0.1:$(cat "$PORTFILE"))/$KEYSPACE"
      ;;
    build) build ;;
    stop) stop ;;
  esac
}

main "$@"
