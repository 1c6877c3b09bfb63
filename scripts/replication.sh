#!/usr/bin/env bash
# Starts a MariaDB primary and one replica (GTID, binlog_format=ROW, read_only=1 on the
# replica) on free loopback ports under .local/replication/, from empty data, and prints
# `export` lines for them on stdout:
#
#   eval "$(scripts/replication.sh up semisync)"  # semi-sync, AFTER_SYNC (the default)
#   eval "$(scripts/replication.sh up async)"     # plain asynchronous replication
#   scripts/replication.sh stop                   # stop both servers
#
# Printed variables:
#   RSV_REPL_PRIMARY_ADDR / RSV_REPL_REPLICA_ADDR  127.0.0.1:port, root with no password
#   RSV_REPL_PRIMARY_PID  / RSV_REPL_REPLICA_PID   the mariadbd processes (the failover
#                                                  test SIGKILLs the primary's)
# `up` stops a pair left from an earlier run first. With semisync it returns only once the
# primary has its semi-sync replica connected, so no commit falls back to asynchronous.
#
# A replica is promoted (what the failover test does after killing the primary):
#   SELECT MASTER_GTID_WAIT('<Gtid_IO_Pos of SHOW SLAVE STATUS>', 30);  -- apply what it got
#   STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0;
set -euo pipefail
shopt -s inherit_errexit
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR="$ROOT/.local/replication"
WAIT_SECONDS=${RSV_WAIT_SECONDS:-60}

find_bin() {
  command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || true
}
SERVER=$(find_bin mariadbd)
INSTALL_DB=$(find_bin mariadb-install-db)
CLIENT=$(find_bin mariadb)
ensure_binaries() {
  if [ -z "$SERVER" ] || [ -z "$INSTALL_DB" ] || [ -z "$CLIENT" ]; then
    is_root || die "mariadb-server is not installed and we are not root: apt-get install mariadb-server mariadb-client"
    log "installing mariadb-server with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server mariadb-client >&2
    SERVER=$(find_bin mariadbd) INSTALL_DB=$(find_bin mariadb-install-db) CLIENT=$(find_bin mariadb)
  fi
}

sql() { # sql PORT STATEMENTS...
  local port=$1; shift
  "$CLIENT" --no-defaults --protocol=TCP --connect-timeout=3 -h 127.0.0.1 -P "$port" -u root -N -B -e "$*"
}

# start NAME SERVER_ID EXTRA_OPTIONS...: a fresh server under $DIR/NAME; prints its port.
start() {
  local name=$1 id=$2; shift 2
  local dir="$DIR/$name" port user_opt=()
  is_root && user_opt=(--user=root)
  rm -rf "$dir"; mkdir -p "$dir"
  "$INSTALL_DB" --no-defaults --datadir="$dir/data" "${user_opt[@]}" \
    --auth-root-authentication-method=normal --skip-test-db >"$dir/install-db.log" 2>&1 ||
    { tail -n 30 "$dir/install-db.log" >&2; die "mariadb-install-db failed for $name"; }
  # shellcheck disable=SC2119 # any free port: no preferred one
  port=$(free_port)
  setsid "$SERVER" --no-defaults "${user_opt[@]}" --datadir="$dir/data" \
    --socket="${TMPDIR:-/tmp}/rsv-repl-$name-$port.sock" --pid-file="$dir/mariadbd.pid" \
    --log-error="$dir/mariadbd.log" --port="$port" --bind-address=127.0.0.1 --skip-name-resolve \
    --character-set-server=utf8mb4 --max-connections=500 --innodb-buffer-pool-size=128M \
    --server-id="$id" --log-bin="$dir/data/binlog" --binlog-format=ROW --log-slave-updates \
    --gtid-strict-mode=1 "$@" \
    </dev/null >>"$dir/mariadbd.log" 2>&1 3>&- 9>&- &
  echo $! >"$dir/pid"
  echo "$port" >"$dir/port"
  local deadline=$((SECONDS + WAIT_SECONDS))
  until sql "$port" "SELECT 1" >/dev/null 2>&1; do
    kill -0 "$(cat "$dir/pid")" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ] ||
      { tail -n 30 "$dir/mariadbd.log" >&2; die "$name did not come up"; }
    sleep 0.3
  done
  echo "$port"
}

cmd_stop() {
  local name pid
  for name in primary replica; do
    [ -s "$DIR/$name/pid" ] || continue
    pid=$(cat "$DIR/$name/pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$DIR/$name/pid"
  done
}

cmd_up() {
  local mode=$1 primary replica semi=() semi_replica=()
  ensure_binaries
  cmd_stop
  mkdir -p "$DIR"
  if [ "$mode" = semisync ]; then
    # AFTER_SYNC: a commit is acknowledged to the client only once the replica has it in its
    # relay log. The timeout is long, so that a slow replica does not quietly turn the
    # primary asynchronous while the test runs.
    # The replica acknowledges only: were it a semi-sync master too, with no replica of its
    # own, its applier would wait for an acknowledgement on every transaction. Once promoted,
    # it turns rpl_semi_sync_master_enabled on when it has a replica again.
    semi=(--rpl-semi-sync-master-enabled=1 --rpl-semi-sync-master-wait-point=AFTER_SYNC
      --rpl-semi-sync-master-timeout=60000)
    semi_replica=(--rpl-semi-sync-slave-enabled=1)
  fi
  primary=$(start primary 1 "${semi[@]}")
  replica=$(start replica 2 --read-only=1 "${semi_replica[@]}")
  sql "$replica" "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$primary, MASTER_USER='root',
    MASTER_PASSWORD='', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; START SLAVE;"
  local deadline=$((SECONDS + WAIT_SECONDS))
  until [ "$(sql "$replica" "SHOW SLAVE STATUS\G" | grep -c 'Yes$')" -ge 2 ]; do
    [ "$SECONDS" -lt "$deadline" ] || { sql "$replica" "SHOW SLAVE STATUS\G" >&2; die "replication did not start"; }
    sleep 0.3
  done
  if [ "$mode" = semisync ]; then
    until [ "$(sql "$primary" "SHOW STATUS LIKE 'Rpl_semi_sync_master_clients'" | cut -f2)" = 1 ] &&
      [ "$(sql "$primary" "SHOW STATUS LIKE 'Rpl_semi_sync_master_status'" | cut -f2)" = ON ]; do
      [ "$SECONDS" -lt "$deadline" ] || die "the semi-sync replica did not connect"
      sleep 0.3
    done
  fi
  log "$mode primary on 127.0.0.1:$primary, replica on 127.0.0.1:$replica (logs under $DIR)"
  emit RSV_REPL_PRIMARY_ADDR "127.0.0.1:$primary"
  emit RSV_REPL_REPLICA_ADDR "127.0.0.1:$replica"
  emit RSV_REPL_PRIMARY_PID "$(cat "$DIR/primary/pid")"
  emit RSV_REPL_REPLICA_PID "$(cat "$DIR/replica/pid")"
}

mkdir -p "$DIR"
take_lock "$DIR/.lock" 300
case ${1:-up} in
  up) mode=${2:-semisync}
      case $mode in semisync | async) ;; *) die "mode is semisync or async, not $mode" ;; esac
      cmd_up "$mode" ;;
  stop) cmd_stop ;;
  *) usage; exit 2 ;;
esac
