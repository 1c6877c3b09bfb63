#!/usr/bin/env bash
# Makes sure a MySQL-compatible server and a Redis are reachable for the tests
# and for `make run`, then prints `export` lines for them on stdout:
#
#   eval "$(scripts/services.sh)"      # sets the variables below (tests)
#   scripts/services.sh --run          # for `make run`: see "Run mode" below
#   scripts/services.sh --private      # ignore running servers, use private ones
#   scripts/services.sh reset          # empty the app database `make run` uses
#   scripts/services.sh stop           # stop the private servers started here
#
# Printed variables:
#   RESERVATION_TEST_MYSQL_DSN   go-sql-driver DSN without a database name
#   RESERVATION_TEST_REDIS_ADDR  host:port
#   RESERVATION_MYSQL_DSN        same server, database `reservation` (created)
#   RESERVATION_REDIS_ADDR       same Redis
# To point everything at other servers, set RESERVATION_TEST_MYSQL_DSN and
# RESERVATION_TEST_REDIS_ADDR before calling; the app variables follow them.
#
# Order of preference, for each of MySQL and Redis:
#   1. RESERVATION_TEST_* already set in the environment and reachable;
#   2. a server on 127.0.0.1 at the default port that accepts root with an
#      empty password (MySQL) or answers PING (Redis);
#   3. a private server under .local/ on a free port, installed with apt-get
#      first if the binary is missing and we are root. It keeps running
#      between calls (its port is kept in .local/*.port) until `stop`.
#
# Run mode (--run, used by `make run`): a RESERVATION_MYSQL_DSN or
# RESERVATION_REDIS_ADDR set by the user is used as it is (that server is not
# chosen, started or installed), and the addresses reservationd will use are
# printed on stderr. Only what running needs is installed: not redis-sentinel,
# which only the Sentinel tests use (the default mode, for tests, installs it).
#
# Knobs (environment): RSV_MYSQL_PORT / RSV_REDIS_PORT change the default
# ports probed in step 2 (point them at a dead port to test step 3),
# RSV_PRIVATE=1 is the same as --private, RSV_WAIT_SECONDS bounds the wait
# for a private server to answer (default 60).
set -euo pipefail
# Let failures inside $(...) (e.g. in start_private_mysql) abort the script too.
shopt -s inherit_errexit
# log/die, emit (fd 3 is the real stdout), apt_install, free_port, wait_for, stop_pidfile...
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR="$ROOT/.local"
MYSQL_DEFAULT_PORT=${RSV_MYSQL_PORT:-3306}
REDIS_DEFAULT_PORT=${RSV_REDIS_PORT:-6379}
WAIT_SECONDS=${RSV_WAIT_SECONDS:-60}
PRIVATE=${RSV_PRIVATE:-0}
APP_DB=reservation

# ---------------------------------------------------------------- MySQL ----

MYSQL_CLIENT=
ensure_mysql_client() {
  [ -n "$MYSQL_CLIENT" ] && return
  MYSQL_CLIENT=$(command -v mariadb || command -v mysql || true)
  if [ -z "$MYSQL_CLIENT" ]; then
    apt_install mariadb-client
    MYSQL_CLIENT=$(command -v mariadb || command -v mysql) || die "no mariadb/mysql client after install"
  fi
}

# mysql_cli HOST PORT USER PASS ARGS...: the command-line client over TCP.
# --no-defaults: ignore ~/.my.cnf, so we see what the Go driver will see.
mysql_cli() {
  local host=$1 port=$2 user=$3 pass=$4; shift 4
  MYSQL_PWD=$pass "$MYSQL_CLIENT" --no-defaults --protocol=TCP --connect-timeout=3 \
    -h "$host" -P "$port" -u "$user" "$@"
}
mysql_ping() { mysql_cli "$@" -e 'SELECT 1' >/dev/null 2>&1; }

# parse_dsn DSN: sets DSN_USER DSN_PASS DSN_HOST DSN_PORT DSN_BASE DSN_PARAMS
# for a `user[:pass]@tcp(host:port)/[db][?params]` DSN; fails for other forms.
parse_dsn() {
  local re='^([^:@]*)(:(.*))?@tcp\(([^:()]+)(:([0-9]+))?\)/([^/?]*)(\?.*)?$'
  [[ $1 =~ $re ]] || return 1
  DSN_USER=${BASH_REMATCH[1]} DSN_PASS=${BASH_REMATCH[3]}
  DSN_HOST=${BASH_REMATCH[4]} DSN_PORT=${BASH_REMATCH[6]:-3306}
  DSN_PARAMS=${BASH_REMATCH[8]}
  DSN_BASE=${1%%"/${BASH_REMATCH[7]}${DSN_PARAMS}"}/   # everything up to the "/"
}

# Private MariaDB: data, pid and log under .local/mysql, port in .local/mysql.port.
# The socket goes to /tmp: a deep checkout can exceed the 108-byte socket path
# limit, and a socket file inside the tree upsets `docker build .`.
MY_DIR="$DIR/mysql"
MY_DATA="$MY_DIR/data"
MY_PID="$MY_DIR/mariadbd.pid"
MY_LOG="$MY_DIR/mariadbd.log"
MY_PORTFILE="$DIR/mysql.port"
MY_SOCK="${TMPDIR:-/tmp}/reservation-mysql-$(printf '%s' "$DIR" | cksum | cut -d' ' -f1).sock"

start_private_mysql() {
  local port
  if pid_alive "$MY_PID" && [ -s "$MY_PORTFILE" ]; then
    port=$(cat "$MY_PORTFILE")
    log "reusing private MariaDB on port $port"
    wait_for "private MariaDB" "$(cat "$MY_PID")" "$MY_LOG" "$DIR" mysql_ping 127.0.0.1 "$port" root ""
    echo "$port"; return
  fi

  local server
  server=$(command -v mariadbd || command -v mysqld || true)
  # Debian puts the server in /usr/sbin, which a non-root PATH may lack.
  [ -z "$server" ] && [ -x /usr/sbin/mariadbd ] && server=/usr/sbin/mariadbd
  if [ -z "$server" ]; then
    apt_install mariadb-server
    server=$(command -v mariadbd || command -v mysqld || echo /usr/sbin/mariadbd)
  fi
  ensure_mysql_client

  local user_opt=()
  # mariadbd refuses to run as root unless told to; as root, own the files too.
  is_root && user_opt=(--user=root)

  mkdir -p "$MY_DIR"
  if [ ! -d "$MY_DATA/mysql" ]; then
    log "initialising private MariaDB data in $MY_DATA"
    rm -rf "$MY_DATA"
    local install_db
    install_db=$(command -v mariadb-install-db || command -v mysql_install_db) ||
      die "mariadb-install-db not found"
    # normal: root@localhost/127.0.0.1 with an empty password, reachable over TCP
    # (the default, socket, would only let the unix user root in via the socket).
    "$install_db" --no-defaults --datadir="$MY_DATA" "${user_opt[@]}" \
      --auth-root-authentication-method=normal --skip-test-db \
      >"$MY_DIR/install-db.log" 2>&1 ||
      { tail -n 30 "$MY_DIR/install-db.log" >&2; die "mariadb-install-db failed"; }
  fi

  # Prefer the port of the last run so DSNs saved by the user stay valid.
  port=$(free_port "$(cat "$MY_PORTFILE" 2>/dev/null || true)")
  log "starting private MariaDB on 127.0.0.1:$port (log: $MY_LOG)"
  rm -f "$MY_PID"
  # setsid + closed fds: the server must outlive this script and must not keep
  # the caller's $(...) pipe (fd 1/3) or our lock (fd 9) open.
  setsid "$server" --no-defaults "${user_opt[@]}" \
    --datadir="$MY_DATA" --socket="$MY_SOCK" --pid-file="$MY_PID" \
    --log-error="$MY_LOG" --port="$port" --bind-address=127.0.0.1 \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
    --max-connections=500 \
    </dev/null >>"$MY_LOG" 2>&1 3>&- 9>&- &
  local pid=$!   # setsid execs in place here (we are not a group leader)
  echo "$port" >"$MY_PORTFILE"
  wait_for "private MariaDB" "$pid" "$MY_LOG" "$DIR" mysql_ping 127.0.0.1 "$port" root ""
  echo "$port"
}

# Sets MYSQL_TEST_DSN and MYSQL_{HOST,PORT,USER,PASS} for the chosen server.
choose_mysql() {
  ensure_mysql_client
  if [ "$PRIVATE" != 1 ] && [ -n "${RESERVATION_TEST_MYSQL_DSN:-}" ]; then
    if parse_dsn "$RESERVATION_TEST_MYSQL_DSN"; then
      if mysql_ping "$DSN_HOST" "$DSN_PORT" "$DSN_USER" "$DSN_PASS"; then
        log "MySQL: using RESERVATION_TEST_MYSQL_DSN from the environment"
        MYSQL_TEST_DSN=$RESERVATION_TEST_MYSQL_DSN
        MYSQL_HOST=$DSN_HOST MYSQL_PORT=$DSN_PORT MYSQL_USER=$DSN_USER MYSQL_PASS=$DSN_PASS
        MYSQL_APP_DSN="${DSN_BASE}${APP_DB}${DSN_PARAMS}"
        return
      fi
      log "MySQL: RESERVATION_TEST_MYSQL_DSN from the environment does not answer; ignoring it"
    else
      die "cannot parse RESERVATION_TEST_MYSQL_DSN (want user[:pass]@tcp(host:port)/); unset it to let this script choose"
    fi
  fi

  MYSQL_HOST=127.0.0.1 MYSQL_USER=root MYSQL_PASS=
  if [ "$PRIVATE" != 1 ] && mysql_ping 127.0.0.1 "$MYSQL_DEFAULT_PORT" root ""; then
    log "MySQL: using the server on 127.0.0.1:$MYSQL_DEFAULT_PORT"
    MYSQL_PORT=$MYSQL_DEFAULT_PORT
  else
    MYSQL_PORT=$(start_private_mysql)
  fi
  MYSQL_TEST_DSN="root@tcp(127.0.0.1:$MYSQL_PORT)/"
  MYSQL_APP_DSN="root@tcp(127.0.0.1:$MYSQL_PORT)/$APP_DB"
}

# ---------------------------------------------------------------- Redis ----

# redis_ping HOST PORT: speaks RESP over bash's /dev/tcp, so no redis-cli needed.
redis_ping() {
  # shellcheck disable=SC2016 # expanded by the inner bash, from "$1" "$2"
  timeout 3 bash -c '
    exec 5<>"/dev/tcp/$1/$2" || exit 1
    printf "PING\r\n" >&5
    IFS= read -r reply <&5
    [[ $reply == "+PONG"* ]]' _ "$1" "$2" 2>/dev/null
}

RD_DIR="$DIR/redis"
RD_PID="$RD_DIR/redis.pid"
RD_LOG="$RD_DIR/redis.log"
RD_PORTFILE="$DIR/redis.port"

start_private_redis() {
  local port
  if pid_alive "$RD_PID" && [ -s "$RD_PORTFILE" ]; then
    port=$(cat "$RD_PORTFILE")
    log "reusing private Redis on port $port"
    wait_for "private Redis" "$(cat "$RD_PID")" "$RD_LOG" "$DIR" redis_ping 127.0.0.1 "$port"
    echo "$port"; return
  fi

  local server
  server=$(command -v redis-server || true)
  if [ -z "$server" ]; then
    apt_install redis-server
    server=$(command -v redis-server) || die "redis-server not found after install"
  fi

  mkdir -p "$RD_DIR"
  port=$(free_port "$(cat "$RD_PORTFILE" 2>/dev/null || true)")
  log "starting private Redis on 127.0.0.1:$port (log: $RD_LOG)"
  rm -f "$RD_PID"
  # In-memory only (no RDB/AOF): test data need not survive a restart.
  # Started like MariaDB (setsid + &) rather than --daemonize, so that we know
  # its pid at once and notice right away if it exits (e.g. bad option).
  setsid "$server" --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --dir "$RD_DIR" --logfile "$RD_LOG" --pidfile "$RD_PID" \
    </dev/null >>"$RD_DIR/redis.stdout" 2>&1 3>&- 9>&- &
  local pid=$!
  echo "$port" >"$RD_PORTFILE"
  wait_for "private Redis" "$pid" "$RD_LOG" "$DIR" redis_ping 127.0.0.1 "$port"
  echo "$port"
}

# Sets REDIS_ADDR.
choose_redis() {
  if [ "$PRIVATE" != 1 ] && [ -n "${RESERVATION_TEST_REDIS_ADDR:-}" ]; then
    local host=${RESERVATION_TEST_REDIS_ADDR%:*} port=${RESERVATION_TEST_REDIS_ADDR##*:}
    if redis_ping "$host" "$port"; then
      log "Redis: using RESERVATION_TEST_REDIS_ADDR from the environment"
      REDIS_ADDR=$RESERVATION_TEST_REDIS_ADDR
      return
    fi
    log "Redis: RESERVATION_TEST_REDIS_ADDR from the environment does not answer; ignoring it"
  fi
  if [ "$PRIVATE" != 1 ] && redis_ping 127.0.0.1 "$REDIS_DEFAULT_PORT"; then
    log "Redis: using the server on 127.0.0.1:$REDIS_DEFAULT_PORT"
    REDIS_ADDR=127.0.0.1:$REDIS_DEFAULT_PORT
  else
    REDIS_ADDR=127.0.0.1:$(start_private_redis)
  fi
}

# The Sentinel tests start their own sentinels with Debian's redis-sentinel: install it when
# missing (as root; otherwise say how, and let the tests that need it fail). Tests only:
# --run (make run) does not call it.
ensure_sentinel() {
  command -v redis-sentinel >/dev/null && return
  if is_root; then
    apt_install redis-sentinel
  else
    log "warning: redis-sentinel is not installed and we are not root: 'sudo apt-get install -y redis-sentinel' (the Sentinel tests need it)"
  fi
}

# ----------------------------------------------------------------- stop ----

cmd_stop() {
  stop_pidfile "private MariaDB" "$MY_PID"
  stop_pidfile "private Redis" "$RD_PID"
  # The *.port files stay: the next start prefers the same ports, so DSNs the
  # user saved keep working. Reuse is decided by the pid, not by these files.
  rm -f "$MY_SOCK"
}

# ----------------------------------------------------------------- main ----

# redact_dsn DSN: the DSN with its password replaced by ***, for printing.
redact_dsn() {
  if parse_dsn "$1" && [ -n "$DSN_PASS" ]; then
    printf '%s' "${1/":$DSN_PASS@"/":***@"}"
  else
    printf '%s' "$1"
  fi
}

# cmd_run: the servers for `make run`, the user's RESERVATION_MYSQL_DSN and
# RESERVATION_REDIS_ADDR first, then the addresses reservationd will use.
cmd_run() {
  local app_dsn redis_addr
  if [ -n "${RESERVATION_MYSQL_DSN:-}" ]; then
    app_dsn=$RESERVATION_MYSQL_DSN
    log "MySQL: using RESERVATION_MYSQL_DSN from the environment"
    # Looked at with a client already here, if any: nothing is installed for the user's server.
    MYSQL_CLIENT=$(command -v mariadb || command -v mysql || true)
    if [ -n "$MYSQL_CLIENT" ] && parse_dsn "$app_dsn"; then
      mysql_ping "$DSN_HOST" "$DSN_PORT" "$DSN_USER" "$DSN_PASS" ||
        log "warning: the MySQL of RESERVATION_MYSQL_DSN ($DSN_HOST:$DSN_PORT) does not answer"
    fi
  else
    choose_mysql
    mysql_cli "$MYSQL_HOST" "$MYSQL_PORT" "$MYSQL_USER" "$MYSQL_PASS" \
      -e "CREATE DATABASE IF NOT EXISTS \`$APP_DB\`" ||
      die "could not create database $APP_DB"
    app_dsn=$MYSQL_APP_DSN
  fi
  if [ -n "${RESERVATION_REDIS_ADDR:-}" ]; then
    redis_addr=$RESERVATION_REDIS_ADDR
    log "Redis: using RESERVATION_REDIS_ADDR from the environment"
    redis_ping "${redis_addr%:*}" "${redis_addr##*:}" ||
      log "warning: the Redis of RESERVATION_REDIS_ADDR ($redis_addr) does not answer (reservationd still serves, on the database guard alone)"
  else
    choose_redis
    redis_addr=$REDIS_ADDR
  fi

  local grpc=${RESERVATION_GRPC_ADDR:-127.0.0.1:50051} http=${RESERVATION_HTTP_ADDR:-127.0.0.1:8080}
  log "reservationd will use:"
  log "  gRPC   $grpc (rsvctl, grpcurl)"
  log "  HTTP   http://$http/ (the timeline page; JSON API under /v1/, /metrics, /openapi.json)"
  log "  MySQL  $(redact_dsn "$app_dsn")"
  log "  Redis  $redis_addr"
  log "stop it with Ctrl-C; 'make reset' (while it is stopped) empties its database"
  emit RESERVATION_MYSQL_DSN "$app_dsn"
  emit RESERVATION_REDIS_ADDR "$redis_addr"
}

# cmd_reset: drop and create again the database `make run` uses (the one of
# RESERVATION_MYSQL_DSN when it is set), so the docs' sessions start from an
# empty one. reservationd migrates it again at its next start.
cmd_reset() {
  local host port user pass db
  ensure_mysql_client
  if [ -n "${RESERVATION_MYSQL_DSN:-}" ]; then
    parse_dsn "$RESERVATION_MYSQL_DSN" ||
      die "cannot parse RESERVATION_MYSQL_DSN (want user[:pass]@tcp(host:port)/db)"
    host=$DSN_HOST port=$DSN_PORT user=$DSN_USER pass=$DSN_PASS
    db=${RESERVATION_MYSQL_DSN#"$DSN_BASE"}
    db=${db%%\?*}
    [ -n "$db" ] || die "RESERVATION_MYSQL_DSN names no database"
  else
    choose_mysql
    host=$MYSQL_HOST port=$MYSQL_PORT user=$MYSQL_USER pass=$MYSQL_PASS db=$APP_DB
  fi
  log "dropping and creating database $db on $host:$port"
  mysql_cli "$host" "$port" "$user" "$pass" \
    -e "DROP DATABASE IF EXISTS \`$db\`; CREATE DATABASE \`$db\`" ||
    die "could not reset database $db"
}

cmd_up() {
  choose_mysql
  # The app (make run) expects its database to exist; tests make their own.
  mysql_cli "$MYSQL_HOST" "$MYSQL_PORT" "$MYSQL_USER" "$MYSQL_PASS" \
    -e "CREATE DATABASE IF NOT EXISTS \`$APP_DB\`" ||
    die "could not create database $APP_DB"
  choose_redis
  ensure_sentinel

  emit RESERVATION_TEST_MYSQL_DSN "$MYSQL_TEST_DSN"
  emit RESERVATION_TEST_REDIS_ADDR "$REDIS_ADDR"
  # Always derived from the servers chosen above, never passed through: a value
  # left in the shell by an earlier eval may name a private server since stopped.
  emit RESERVATION_MYSQL_DSN "$MYSQL_APP_DSN"
  emit RESERVATION_REDIS_ADDR "$REDIS_ADDR"
}

main() {
  local cmd=up
  for arg in "$@"; do
    case $arg in
      up) cmd=up ;;
      stop) cmd=stop ;;
      reset) cmd=reset ;;
      --run) cmd=run ;;
      --private) PRIVATE=1 ;;
      -h | --help) usage; exit 0 ;;
      *) usage; die "unknown argument: $arg" ;;
    esac
  done

  mkdir -p "$DIR"
  # Serialise concurrent runs (e.g. `make test` and `make run` started together)
  # so they don't both initialise or start the same private server.
  take_lock "$DIR/.lock" 300

  case $cmd in
    up) cmd_up ;;
    run) cmd_run ;;
    reset) cmd_reset ;;
    stop) cmd_stop ;;
  esac
}

main "$@"
