#!/usr/bin/env bash
# Starts (or finds running) a 3-member MySQL 9.7 Group Replication group on loopback, in the
# chroot of scripts/mysql97.sh, then prints `export` lines for it on stdout:
#
#   eval "$(bash scripts/mysqlgr.sh)"        # single-primary (the default)
#   eval "$(bash scripts/mysqlgr.sh multi)"  # multi-primary: every member takes writes
#   bash scripts/mysqlgr.sh stop             # stop every member started here
#
# Printed variables:
#   RESERVATION_TEST_GR_DSNS  three go-sql-driver DSNs without a database name, one per
#                             member, comma-separated: root@tcp(127.0.0.1:P1)/,...
#   RESERVATION_TEST_GR_MODE  single or multi: the mode the group runs in
#
# The server is the chroot's (.local/mysql97/root, made by `scripts/mysql97.sh install` when
# missing: that needs root once). Each member has its own SQL port (kept in
# .local/mysqlgr/portN, so a restarted member comes back where the group and saved DSNs expect
# it) and its group communication port (XCom, the default stack of this build), its own data,
# option file and log under the chroot's /srv/gr/memberN. Its settings: server_id,
# gtid_mode=ON, enforce_gtid_consistency=ON, plugin_load_add=group_replication.so, one group
# name, group_replication_local_address and _group_seeds on 127.0.0.1,
# group_replication_start_on_boot=OFF, and small InnoDB buffer pools (three members share a
# small machine). The recovery user `rsv_gr` has REPLICATION SLAVE, BACKUP_ADMIN,
# GROUP_REPLICATION_STREAM and CONNECTION_ADMIN, and is set with CHANGE REPLICATION SOURCE ...
# FOR CHANNEL 'group_replication_recovery'. That channel refuses GET_SOURCE_PUBLIC_KEY, so
# group_replication_recovery_get_public_key=ON lets it log in over a plain connection
# (caching_sha2_password).
#
# Members that run are reused. A member that is down is started and rejoins the group
# (START GROUP_REPLICATION; it catches up by distributed recovery from a donor). When no member
# is ONLINE, the group starts over from empty data: member 1 bootstraps it and the others join.
# A running group in the other mode is switched online
# (group_replication_switch_to_multi_primary_mode() / _single_primary_mode()).
#
# `stop` stops every member (TERM to all, then KILL after 60 s), whether it answers or not;
# data is only ever deleted afterwards, when a new group starts.
#
# Knobs (environment): RSV_GR_MODE single or multi (an argument wins), RSV_GR_EXPEL_TIMEOUT
# sets group_replication_member_expel_timeout (seconds; the server's default, 5, when unset),
# RSV_WAIT_SECONDS bounds each wait (default 120).
set -euo pipefail
shopt -s inherit_errexit
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR="$ROOT/.local/mysqlgr"
CHROOT="$ROOT/.local/mysql97/root"
READY="$ROOT/.local/mysql97/installed"
WAIT_SECONDS=${RSV_WAIT_SECONDS:-120}
MEMBERS=(1 2 3)
GROUP_NAME=5e1f2c36-7d0b-4c8e-9a51-3f0c2b6d9e47
REPL_USER=rsv_gr
REPL_PASS=rsv-gr-recovery

# alive PID: a member killed by a test may stay a zombie (reparented to an init that does not
# reap), so a zombie counts as dead. Redefines lib.sh's alive.
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local state
  state=$(sed -n 's/^[0-9]* (.*) \([A-Z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null || true)
  [ "$state" != Z ]
}

# Paths as mysqld sees them inside the chroot, and as the host sees them.
c_dir() { echo "/srv/gr/member$1"; }
h_dir() { echo "$CHROOT$(c_dir "$1")"; }
pidfile() { echo "$(h_dir "$1")/mysqld.pid"; }
logfile() { echo "$(h_dir "$1")/mysqld.log"; }
# port_of N [gr]: member N's SQL port, or its group communication (XCom) port.
port_of() { sed -n "$([ "${2:-}" = gr ] && echo 2 || echo 1)p" "$DIR/port$1"; }

in_chroot() {
  chroot "$CHROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 "$@"
}

# sql N STATEMENTS: run them on member N as root over TCP; prints the values, tab-separated.
sql() {
  in_chroot mysql --no-defaults --protocol=TCP --connect-timeout=3 -h 127.0.0.1 \
    -P "$(port_of "$1")" -u root -N -B -e "$2"
}

# state N: member N's own MEMBER_STATE (ONLINE, RECOVERING, OFFLINE, ERROR), or nothing.
state() {
  sql "$1" "SELECT MEMBER_STATE FROM performance_schema.replication_group_members WHERE MEMBER_ID = @@server_uuid" 2>/dev/null || true
}
online_count() {
  sql "$1" "SELECT COUNT(*) FROM performance_schema.replication_group_members WHERE MEMBER_STATE = 'ONLINE'" 2>/dev/null || echo 0
}
running() { pid_alive "$(pidfile "$1")" && [ -s "$DIR/port$1" ]; }
answers() { sql "$1" "SELECT 1" >/dev/null 2>&1; }

ensure_chroot() {
  [ -f "$READY" ] && [ -x "$CHROOT/usr/sbin/mysqld" ] && return
  log "the MySQL 9.7 chroot is missing: running scripts/mysql97.sh install"
  bash "$ROOT/scripts/mysql97.sh" install 3>&- 9>&-
  [ -x "$CHROOT/usr/sbin/mysqld" ] || die "no mysqld in $CHROOT after scripts/mysql97.sh install"
  [ -e "$CHROOT/usr/lib/mysql/plugin/group_replication.so" ] ||
    die "the chroot's MySQL has no group_replication.so"
}

write_cnf() {
  local n=$1 mode=$2 seeds=() m single enforce
  for m in "${MEMBERS[@]}"; do seeds+=("127.0.0.1:$(port_of "$m" gr)"); done
  if [ "$mode" = multi ]; then single=OFF enforce=ON; else single=ON enforce=OFF; fi
  local IFS=,
  cat >"$(h_dir "$n")/my.cnf" <<EOF
# Written by scripts/mysqlgr.sh; rewritten on each start.
[mysqld]
user=root
datadir=$(c_dir "$n")/data
socket=$(c_dir "$n")/mysqld.sock
pid-file=$(c_dir "$n")/mysqld.pid
log-error=$(c_dir "$n")/mysqld.log
port=$(port_of "$n")
bind-address=127.0.0.1
report_host=127.0.0.1
report_port=$(port_of "$n")
mysqlx=OFF
secure-file-priv=/srv/files
skip-name-resolve
character-set-server=utf8mb4
max-connections=500
# Three members on a small machine.
innodb_buffer_pool_size=64M
innodb_log_buffer_size=8M
performance_schema_max_table_instances=500
group_replication_message_cache_size=134217728
server_id=$n
gtid_mode=ON
enforce_gtid_consistency=ON
plugin_load_add=group_replication.so
group_replication_group_name=$GROUP_NAME
group_replication_start_on_boot=OFF
group_replication_bootstrap_group=OFF
group_replication_communication_stack=XCOM
group_replication_local_address=127.0.0.1:$(port_of "$n" gr)
group_replication_group_seeds=${seeds[*]}
group_replication_ip_allowlist=127.0.0.1
group_replication_single_primary_mode=$single
group_replication_enforce_update_everywhere_checks=$enforce
group_replication_recovery_get_public_key=ON
EOF
  if [ -n "${RSV_GR_EXPEL_TIMEOUT:-}" ]; then
    echo "group_replication_member_expel_timeout=$RSV_GR_EXPEL_TIMEOUT" >>"$(h_dir "$n")/my.cnf"
  fi
}

# init_member N: empty data, root@127.0.0.1 with an empty password (as mysql97.sh makes).
init_member() {
  local n=$1
  rm -rf "$(h_dir "$n")"
  mkdir -p "$(h_dir "$n")" "$CHROOT/srv/files"
  cat >"$(h_dir "$n")/init.sql" <<'EOF'
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
EOF
  in_chroot /usr/sbin/mysqld --no-defaults --user=root --initialize-insecure \
    --datadir="$(c_dir "$n")/data" --secure-file-priv=/srv/files --mysqlx=OFF \
    --init-file="$(c_dir "$n")/init.sql" --log-error="$(c_dir "$n")/init.log" ||
    { tail -n 30 "$(h_dir "$n")/init.log"; die "mysqld --initialize-insecure failed for member$n"; }
}

start_mysqld() {
  local n=$1 mode=$2
  write_cnf "$n" "$mode"
  rm -f "$(pidfile "$n")"
  log "starting member$n on 127.0.0.1:$(port_of "$n") (log: $(logfile "$n"))"
  # setsid and closed fds: the member outlives this script and keeps neither the caller's
  # $(...) pipe nor our lock open.
  setsid chroot "$CHROOT" /usr/sbin/mysqld --defaults-file="$(c_dir "$n")/my.cnf" \
    </dev/null >/dev/null 2>&1 3>&- 9>&- &
  local pid=$! # chroot execs mysqld: the same pid
  wait_for "member$n" "$pid" "$(logfile "$n")" "$(h_dir "$n")" answers "$n"
}

# The recovery user and channel, on a fresh member, outside the binary log (every member makes
# its own; they must not conflict as transactions of the group).
setup_recovery() {
  sql "$1" "SET SQL_LOG_BIN=0;
    CREATE USER '$REPL_USER'@'%' IDENTIFIED BY '$REPL_PASS';
    GRANT REPLICATION SLAVE, BACKUP_ADMIN, GROUP_REPLICATION_STREAM, CONNECTION_ADMIN ON *.* TO '$REPL_USER'@'%';
    SET SQL_LOG_BIN=1;
    RESET BINARY LOGS AND GTIDS;
    CHANGE REPLICATION SOURCE TO SOURCE_USER='$REPL_USER', SOURCE_PASSWORD='$REPL_PASS' FOR CHANNEL 'group_replication_recovery';"
}

# wait_online N SIZE: member N is ONLINE in a group with SIZE members ONLINE.
wait_online() {
  local n=$1 size=$2 deadline=$((SECONDS + WAIT_SECONDS))
  until [ "$(state "$n")" = ONLINE ] && [ "$(online_count "$n")" -ge "$size" ]; do
    if [ "$SECONDS" -ge "$deadline" ] || ! running "$n"; then
      log "member$n is not ONLINE in a group of $size within ${WAIT_SECONDS}s (state '$(state "$n")'); last lines of $(logfile "$n"):"
      tail -n 30 "$(logfile "$n")" >&2 2>/dev/null || true
      log "to start over from empty data: $0 stop (the next start makes a new group)"
      exit 1
    fi
    sleep 0.5
  done
}

# group_mode N: single or multi, as member N's group runs.
group_mode() {
  if [ "$(sql "$1" 'SELECT @@group_replication_single_primary_mode')" = 1 ]; then echo single; else echo multi; fi
}

stop_all() {
  local n pids=()
  for n in "${MEMBERS[@]}"; do
    if pid_alive "$(pidfile "$n")"; then
      pids+=("$(cat "$(pidfile "$n")")")
      log "member$n: stopping pid ${pids[-1]}"
    fi
  done
  [ ${#pids[@]} -eq 0 ] && { log "no member running"; return 0; }
  kill "${pids[@]}" 2>/dev/null || true
  local p deadline=$((SECONDS + 60))
  for p in "${pids[@]}"; do
    while alive "$p" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.5; done
    if alive "$p"; then
      log "pid $p still running after 60s, killing it"
      kill -9 "$p" 2>/dev/null || true
    fi
  done
  for p in "${pids[@]}"; do
    while alive "$p"; do sleep 0.2; done
  done
  for n in "${MEMBERS[@]}"; do rm -f "$(pidfile "$n")"; done
}

cmd_up() {
  local mode=$1 n up=() down=() began=$SECONDS
  ensure_chroot
  mkdir -p "$DIR"
  for n in "${MEMBERS[@]}"; do
    if running "$n" && answers "$n"; then up+=("$n"); else down+=("$n"); fi
  done
  # A member that runs but is not in the group (left, or expelled) counts as up: it only
  # needs START GROUP_REPLICATION, below.
  local online=()
  for n in "${up[@]}"; do [ "$(state "$n")" = ONLINE ] && online+=("$n"); done
  if [ ${#online[@]} -eq 0 ]; then
    log "no member is ONLINE: starting a new $mode-primary group from empty data"
    stop_all # every member, answering or not, before any data is deleted
    rm -rf "$DIR"/port* "$CHROOT/srv/gr"
    for n in "${MEMBERS[@]}"; do
      # shellcheck disable=SC2119 # any free ports: SQL, then XCom
      { free_port; free_port; } >"$DIR/port$n"
    done
    local pids=()
    for n in "${MEMBERS[@]}"; do init_member "$n" & pids+=($!); done
    for n in "${pids[@]}"; do wait "$n" || die "initialising a member failed"; done
    start_mysqld 1 "$mode"
    setup_recovery 1
    sql 1 "SET GLOBAL group_replication_bootstrap_group=ON; START GROUP_REPLICATION; SET GLOBAL group_replication_bootstrap_group=OFF;"
    wait_online 1 1
    for n in 2 3; do
      start_mysqld "$n" "$mode"
      setup_recovery "$n"
      sql "$n" "START GROUP_REPLICATION"
      wait_online "$n" "$n"
    done
  else
    # Members start in the group's current mode (a joiner must match it); a switch comes last.
    local cur
    cur=$(group_mode "${online[0]}")
    for n in "${down[@]}"; do
      [ -s "$DIR/port$n" ] || die "member$n has no port file; run: $0 stop (the next start makes a new group)"
      start_mysqld "$n" "$cur"
    done
    for n in "${MEMBERS[@]}"; do
      if [ "$(state "$n")" != ONLINE ]; then
        log "member$n rejoins the group"
        sql "$n" "STOP GROUP_REPLICATION" >/dev/null 2>&1 || true
        sql "$n" "SET GLOBAL group_replication_single_primary_mode=$([ "$cur" = single ] && echo ON || echo OFF);
          SET GLOBAL group_replication_enforce_update_everywhere_checks=$([ "$cur" = single ] && echo OFF || echo ON);
          START GROUP_REPLICATION"
      fi
    done
    for n in "${MEMBERS[@]}"; do wait_online "$n" ${#MEMBERS[@]}; done
    if [ "$cur" != "$mode" ]; then
      log "switching the group from $cur- to $mode-primary mode"
      sql 1 "SELECT group_replication_switch_to_${mode}_primary_mode()" >/dev/null
    fi
    for n in "${MEMBERS[@]}"; do write_cnf "$n" "$mode"; done # for each member's next start
  fi
  for n in "${MEMBERS[@]}"; do wait_online "$n" ${#MEMBERS[@]}; done
  log "group of ${#MEMBERS[@]} ONLINE, $(group_mode 1)-primary, after $((SECONDS - began))s"

  local dsns=()
  for n in "${MEMBERS[@]}"; do dsns+=("root@tcp(127.0.0.1:$(port_of "$n"))/"); done
  local IFS=,
  emit RESERVATION_TEST_GR_DSNS "${dsns[*]}"
  emit RESERVATION_TEST_GR_MODE "$(group_mode 1)"
}

main() {
  local cmd=up mode=${RSV_GR_MODE:-single}
  for arg in "$@"; do
    case $arg in
      up) cmd=up ;;
      stop) cmd=stop ;;
      single | multi) mode=$arg ;;
      -h | --help) usage; exit 0 ;;
      *) usage; die "unknown argument: $arg" ;;
    esac
  done
  case $mode in single | multi) ;; *) die "RSV_GR_MODE must be single or multi, not $mode" ;; esac
  mkdir -p "$DIR"
  take_lock "$DIR/.lock" 600
  case $cmd in
    up) cmd_up "$mode" ;;
    stop) stop_all ;;
  esac
}

main "$@"
