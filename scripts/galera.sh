#!/usr/bin/env bash
# Starts (or finds running) a 3-node MariaDB Galera cluster on loopback for the
# Galera tests, then prints `export` lines for it on stdout:
#
#   eval "$(scripts/galera.sh)"     # sets the variable below
#   scripts/galera.sh stop          # stop the nodes started here
#
# Printed variable:
#   RESERVATION_TEST_GALERA_DSNS  three go-sql-driver DSNs without a database
#                                 name, comma-separated, one per node:
#                                 root@tcp(127.0.0.1:P1)/,root@tcp(127.0.0.1:P2)/,...
#
# Each node has its own SQL port, Galera base port (gmcast.listen_addr), IST
# port, SST (rsync) port and data directory under .local/galera/nodeN, and a
# my.cnf written there. Settings the service relies on are in that file:
# binlog_format=ROW, innodb_autoinc_lock_mode=2 (wsrep_sync_wait is set per
# session by the service itself). root has an empty password over TCP.
#
# Nodes that run are reused. A node that is down is started and joins the ones
# that run (IST or rsync SST). When none runs, the cluster starts over from
# empty data: node1 is initialised and bootstrapped (--wsrep-new-cluster), and
# the others join it by SST. Three nodes reach Synced in about 30 s.
#
# mariadbd runs as the `mysql` user when we are root (the rsync SST fails as
# root), so the directories are chowned to it. mariadb-server, galera-4 and
# rsync are installed with apt-get when missing and we are root.
#
# Knobs (environment): RSV_WAIT_SECONDS bounds each wait (default 120).
set -euo pipefail
shopt -s inherit_errexit
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR="$ROOT/.local/galera"
WAIT_SECONDS=${RSV_WAIT_SECONDS:-120}
NODES=(1 2 3)
PROVIDER=/usr/lib/galera/libgalera_smm.so

# alive PID: the process runs. A node killed by a test stays a zombie here when
# nothing reaps it (it was reparented to init), so a zombie counts as dead.
# Redefines lib.sh's alive, which pid_alive and stop_pidfile use.
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local state
  state=$(sed -n 's/^[0-9]* (.*) \([A-Z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null || true)
  [ "$state" != Z ]
}

MYSQL_CLIENT=
SERVER=
ensure_binaries() {
  local missing=()
  SERVER=$(command -v mariadbd || true)
  [ -z "$SERVER" ] && [ -x /usr/sbin/mariadbd ] && SERVER=/usr/sbin/mariadbd
  [ -n "$SERVER" ] || missing+=(mariadb-server)
  [ -e "$PROVIDER" ] || missing+=(galera-4)
  command -v rsync >/dev/null || missing+=(rsync)
  command -v mariadb >/dev/null || command -v mysql >/dev/null || missing+=(mariadb-client)
  if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}"
    SERVER=$(command -v mariadbd || echo /usr/sbin/mariadbd)
  fi
  [ -x "$SERVER" ] || die "mariadbd not found"
  [ -e "$PROVIDER" ] || die "$PROVIDER not found (apt-get install galera-4)"
  MYSQL_CLIENT=$(command -v mariadb || command -v mysql) || die "no mariadb client"
}

# sql PORT QUERY: one value (or nothing) from the node at PORT, as root.
sql() {
  "$MYSQL_CLIENT" --no-defaults --protocol=TCP --connect-timeout=3 -h 127.0.0.1 -P "$1" -u root \
    -N -B -e "$2" 2>/dev/null
}
status_of() { sql "$1" "SHOW STATUS LIKE '$2'" | cut -f2; }

# Per-node paths and ports. Ports are kept in nodeN/ports so that a restarted
# node comes back where the others (and saved DSNs) expect it.
node_dir() { echo "$DIR/node$1"; }
node_pidfile() { echo "$(node_dir "$1")/mariadbd.pid"; }
node_log() { echo "$(node_dir "$1")/mariadbd.log"; }
node_sock() { echo "${TMPDIR:-/tmp}/reservation-galera$1-$(printf '%s' "$DIR" | cksum | cut -d' ' -f1).sock"; }
# node_port N KIND: KIND is sql, base, ist or sst.
node_port() {
  local f
  f="$(node_dir "$1")/ports"
  case $2 in
    sql) sed -n 1p "$f" ;; base) sed -n 2p "$f" ;; ist) sed -n 3p "$f" ;; sst) sed -n 4p "$f" ;;
  esac
}

assign_ports() {
  local n
  for n in "${NODES[@]}"; do
    mkdir -p "$(node_dir "$n")"
    # shellcheck disable=SC2119 # no preferred port: four random ones, distinct (TAKEN)
    { free_port; free_port; free_port; free_port; } >"$(node_dir "$n")/ports"
  done
}

write_cnf() {
  local n=$1 d members=() m
  d=$(node_dir "$n")
  for m in "${NODES[@]}"; do members+=("127.0.0.1:$(node_port "$m" base)"); done
  local IFS=,
  cat >"$d/my.cnf" <<EOF
# Written by scripts/galera.sh; rewritten on each start.
[mysqld]
datadir=$d/data
port=$(node_port "$n" sql)
bind-address=127.0.0.1
socket=$(node_sock "$n")
pid-file=$d/mariadbd.pid
log-error=$d/mariadbd.log
skip-name-resolve
character-set-server=utf8mb4
collation-server=utf8mb4_general_ci
max-connections=500
innodb_buffer_pool_size=128M
# Galera's own durability is the cluster's: a node that crashes catches up by IST/SST.
innodb_flush_log_at_trx_commit=2
# Required by Galera.
binlog_format=ROW
default_storage_engine=InnoDB
innodb_autoinc_lock_mode=2
wsrep_on=ON
wsrep_provider=$PROVIDER
wsrep_cluster_name=reservation-test
wsrep_cluster_address=gcomm://${members[*]}
wsrep_node_name=node$n
wsrep_node_address=127.0.0.1
wsrep_provider_options="base_host=127.0.0.1;base_port=$(node_port "$n" base);gmcast.listen_addr=tcp://127.0.0.1:$(node_port "$n" base);ist.recv_addr=127.0.0.1:$(node_port "$n" ist);gcache.size=128M"
wsrep_sst_method=rsync
wsrep_sst_receive_address=127.0.0.1:$(node_port "$n" sst)
EOF
}

USER_OPT=()
own() { if is_root; then chown -R mysql:mysql "$@"; fi; }

init_node1() {
  local d
  d=$(node_dir 1)
  log "initialising node1 data in $d/data"
  rm -rf "$d/data"
  mkdir -p "$d/data"
  own "$d"
  local install_db
  install_db=$(command -v mariadb-install-db || command -v mysql_install_db) || die "mariadb-install-db not found"
  "$install_db" --no-defaults --datadir="$d/data" "${USER_OPT[@]}" \
    --auth-root-authentication-method=normal --skip-test-db >"$d/install-db.log" 2>&1 ||
    { tail -n 30 "$d/install-db.log" >&2; die "mariadb-install-db failed"; }
}

# recover_position N: after a crash (grastate.dat says seqno -1) the node's
# position is only in InnoDB; without it the node would need a full SST. Like
# Debian's galera_recovery, ask mariadbd --wsrep-recover and print the
# --wsrep-start-position option that lets the node rejoin by IST.
recover_position() {
  local d out pos
  d=$(node_dir "$1")
  [ -f "$d/data/grastate.dat" ] && grep -Eq '^seqno:[[:space:]]+-1' "$d/data/grastate.dat" || return 0
  [ -f "$d/data/ibdata1" ] || return 0
  out=$("$SERVER" --defaults-file="$d/my.cnf" "${USER_OPT[@]}" --wsrep-recover --disable-log-error 2>&1 </dev/null 3>&- 9>&-) ||
    { log "node$1: wsrep recovery failed; it will join by SST"; return 0; }
  pos=$(printf '%s\n' "$out" | sed -n 's/.*WSREP: Recovered position: *//p' | tail -n 1)
  if [ -n "$pos" ]; then
    log "node$1: recovered position $pos after a crash"
    echo "--wsrep-start-position=$pos"
  fi
}

# start_node N [--wsrep-new-cluster]
start_node() {
  local n=$1; shift
  local d
  d=$(node_dir "$n")
  mkdir -p "$d/data"
  write_cnf "$n"
  own "$d"
  rm -f "$(node_pidfile "$n")"
  local start_pos
  start_pos=$(recover_position "$n")
  [ -n "$start_pos" ] && set -- "$@" "$start_pos"
  log "starting node$n on 127.0.0.1:$(node_port "$n" sql) $* (log: $(node_log "$n"))"
  # setsid + closed fds: the node outlives this script and keeps neither the
  # caller's $(...) pipe nor our lock open.
  setsid "$SERVER" --defaults-file="$d/my.cnf" "${USER_OPT[@]}" "$@" \
    </dev/null >>"$d/mariadbd.out" 2>&1 3>&- 9>&- &
  echo $! >"$d/launcher.pid"
}

# synced N: node N answers and is Synced.
synced() { [ "$(status_of "$(node_port "$1" sql)" wsrep_local_state_comment)" = Synced ]; }

# wait_synced N SIZE: until node N is Synced in a cluster of at least SIZE.
wait_synced() {
  local n=$1 size=$2 deadline=$((SECONDS + WAIT_SECONDS)) port
  port=$(node_port "$n" sql)
  until synced "$n" && [ "$(status_of "$port" wsrep_cluster_size)" -ge "$size" ] 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ] || ! alive "$(cat "$(node_dir "$n")/launcher.pid" 2>/dev/null || echo 0)"; then
      log "node$n did not reach Synced within ${WAIT_SECONDS}s; last lines of $(node_log "$n"):"
      tail -n 40 "$(node_log "$n")" >&2 2>/dev/null || true
      log "to start over: $0 stop; rm -rf '$DIR'"
      exit 1
    fi
    sleep 0.5
  done
}

running() { pid_alive "$(node_pidfile "$1")" && [ -s "$(node_dir "$1")/ports" ]; }

cmd_up() {
  ensure_binaries
  is_root && USER_OPT=(--user=mysql)
  mkdir -p "$DIR"
  own "$DIR"
  local n up=() down=() began=$SECONDS
  for n in "${NODES[@]}"; do
    if running "$n"; then up+=("$n"); else down+=("$n"); fi
  done
  if [ ${#up[@]} -eq 0 ]; then
    log "no node runs: starting a new cluster from empty data"
    rm -rf "${DIR:?}"/node*
    assign_ports
    init_node1
    start_node 1 --wsrep-new-cluster
    wait_synced 1 1
    up=(1) down=(2 3)
  else
    log "reusing node(s) ${up[*]}"
  fi
  for n in "${down[@]}"; do
    [ -s "$(node_dir "$n")/ports" ] || die "node$n has no ports file; run: $0 stop; rm -rf '$DIR'"
    start_node "$n"
  done
  for n in "${NODES[@]}"; do wait_synced "$n" ${#NODES[@]}; done
  [ ${#down[@]} -gt 0 ] && log "cluster of ${#NODES[@]} Synced after $((SECONDS - began))s"

  local dsns=()
  for n in "${NODES[@]}"; do dsns+=("root@tcp(127.0.0.1:$(node_port "$n" sql))/"); done
  local IFS=,
  emit RESERVATION_TEST_GALERA_DSNS "${dsns[*]}"
}

# Stops nodes 3, 2, 1 in turn: TERM, then KILL after 60 s.
cmd_stop() {
  local n
  for n in 3 2 1; do
    stop_pidfile "node$n" "$(node_pidfile "$n")" 60 "not running" "$(node_sock "$n")"
  done
}

# choose_dir: as root the nodes run as `mysql`, which must reach the data
# directories. A checkout it cannot enter (under /root, say) keeps them under
# /var/tmp instead, in a directory named after the checkout.
choose_dir() {
  is_root && id mysql >/dev/null 2>&1 || return 0
  mkdir -p "$DIR"
  chown mysql:mysql "$DIR"
  if ! su -s /bin/sh mysql -c "test -w '$DIR'" 2>/dev/null; then
    DIR="/var/tmp/reservation-galera-$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)"
    log "user mysql cannot reach $ROOT/.local/galera; using $DIR"
  fi
}

main() {
  local cmd=up
  for arg in "$@"; do
    case $arg in
      up) cmd=up ;;
      stop) cmd=stop ;;
      -h | --help) usage; exit 0 ;;
      *) usage; die "unknown argument: $arg" ;;
    esac
  done
  choose_dir
  mkdir -p "$DIR"
  take_lock "$DIR/.lock" 600
  case $cmd in
    up) cmd_up ;;
    stop) cmd_stop ;;
  esac
}

main "$@"
