#!/usr/bin/env bash
# Makes sure an Oracle MySQL 9.7 server runs for the tests, then prints an
# `export` line for it on stdout:
#
#   eval "$(bash scripts/mysql97.sh)"   # sets RESERVATION_TEST_MYSQL_DSN
#   bash scripts/mysql97.sh stop        # stop the server started here
#   bash scripts/mysql97.sh install     # only make the chroot (scripts/mysqlgr.sh uses it)
#
# MySQL 9.7 is not in Debian 12, so the server comes from Debian's sid suite
# (packages mysql-server-core and mysql-client-core, source mysql-9.7), installed
# into a `debootstrap --variant=minbase sid` chroot under .local/mysql97/root
# (git-ignored). mysqld runs inside that chroot on a free 127.0.0.1 port (3397
# if free; the port is kept in .local/mysql97.port) and the host reaches it
# over TCP as root with an empty password, like the MariaDB of services.sh.
# The first run needs root (debootstrap, chroot); it installs debootstrap with
# apt-get when missing. Later runs reuse the chroot, and a running server.
#
# Printed variable:
#   RESERVATION_TEST_MYSQL_DSN   root@tcp(127.0.0.1:PORT)/
# Redis is not handled here: take it from scripts/services.sh, and eval this
# script after that one, since services.sh sets the MariaDB DSN.
#
# Knobs (environment): RSV_MYSQL97_PORT the preferred port (default 3397),
# RSV_DEBIAN_MIRROR the Debian mirror for sid (default: the host's apt source
# for Debian, else deb.debian.org), RSV_WAIT_SECONDS bounds the wait for the
# server to answer (default 120).
set -euo pipefail
shopt -s inherit_errexit
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR="$ROOT/.local"
M_DIR="$DIR/mysql97"
CHROOT="$M_DIR/root"
PORTFILE="$DIR/mysql97.port"
PREFERRED_PORT=${RSV_MYSQL97_PORT:-3397}
WAIT_SECONDS=${RSV_WAIT_SECONDS:-120}
PACKAGES=(mysql-server-core mysql-client-core)
# Written last by the install, so a half-made chroot is never taken as ready.
READY="$M_DIR/installed"

# Paths as mysqld sees them inside the chroot (all under /srv there).
C_DATA=/srv/data
C_FILES=/srv/files   # secure-file-priv: mysqld aborts when it is unset
C_PID=/srv/mysqld.pid
C_LOG=/srv/mysqld.log
C_SOCK=/srv/mysqld.sock
C_INIT=/srv/init.sql
PIDFILE="$CHROOT$C_PID"
LOGFILE="$CHROOT$C_LOG"

# in_chroot CMD...: run CMD inside the chroot with a plain environment.
in_chroot() {
  chroot "$CHROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}

# The chroot's client, over TCP as root with an empty password: what the Go
# driver sees, without depending on the host's client and its auth plugins.
ping_server() {
  in_chroot mysql --no-defaults --protocol=TCP --connect-timeout=3 \
    -h 127.0.0.1 -P "$1" -u root -e 'SELECT 1' >/dev/null 2>&1
}

# The Debian mirror the host's apt uses (deb822 or one-line sources).
debian_mirror() {
  if [ -n "${RSV_DEBIAN_MIRROR:-}" ]; then echo "$RSV_DEBIAN_MIRROR"; return; fi
  local f uri=
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' "$f")
    [ -n "$uri" ] && break
  done
  if [ -z "$uri" ]; then
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -f "$f" ] || continue
      uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\/.*\/debian\/?$/) { print $i; exit } }' "$f")
      [ -n "$uri" ] && break
    done
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

# Unmount whatever debootstrap or apt left mounted under the chroot (for
# example /proc after an interrupted run), deepest first, so that removing
# the folder can never reach into the host's /proc or /dev.
unmount_chroot() {
  local m
  [ -d "$CHROOT" ] || return 0
  awk -v root="$CHROOT" 'index($2, root "/") == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r m; do
      log "unmounting $m"
      umount -l "$m" || die "could not unmount $m"
    done
}

install_chroot() {
  [ -f "$READY" ] && [ -x "$CHROOT/usr/sbin/mysqld" ] && return
  is_root || die "MySQL 9.7 chroot missing and not root: run this script once as root"
  local t0=$SECONDS
  command -v debootstrap >/dev/null || apt_install debootstrap
  local mirror
  mirror=$(debian_mirror)
  if [ ! -f "$M_DIR/bootstrapped" ]; then
    unmount_chroot
    rm -rf "$CHROOT"
    mkdir -p "$M_DIR"
    log "debootstrap --variant=minbase sid from $mirror into $CHROOT (log: $M_DIR/debootstrap.log)"
    debootstrap --variant=minbase sid "$CHROOT" "$mirror" >"$M_DIR/debootstrap.log" 2>&1 ||
      { tail -n 30 "$M_DIR/debootstrap.log"; unmount_chroot; die "debootstrap failed"; }
    unmount_chroot
    touch "$M_DIR/bootstrapped"
    log "debootstrap done in $((SECONDS - t0))s"
  fi
  local t1=$SECONDS
  # The archive snapshot behind the mirror may be older than its Release
  # file's Valid-Until; apt would then refuse every index.
  cat >"$CHROOT/etc/apt/apt.conf.d/99reservation" <<'EOF'
Acquire::Check-Valid-Until "false";
APT::Install-Recommends "false";
EOF
  # No init system runs in the chroot: keep maintainer scripts from starting services.
  printf '#!/bin/sh\nexit 101\n' >"$CHROOT/usr/sbin/policy-rc.d"
  chmod +x "$CHROOT/usr/sbin/policy-rc.d"
  log "installing ${PACKAGES[*]} in the chroot (log: $M_DIR/apt.log)"
  { in_chroot apt-get -o Acquire::Check-Valid-Until=false update &&
    in_chroot apt-get install -y "${PACKAGES[@]}"; } >"$M_DIR/apt.log" 2>&1 ||
    { tail -n 30 "$M_DIR/apt.log"; die "apt-get install in the chroot failed"; }
  in_chroot apt-get clean >/dev/null 2>&1 || true
  log "packages installed in $((SECONDS - t1))s; chroot ready in $((SECONDS - t0))s"
  touch "$READY"
}

log_versions() {
  local pkg
  for pkg in "${PACKAGES[@]}"; do
    log "$pkg $(in_chroot dpkg-query -W -f='${Version} (source ${source:Package})' "$pkg" 2>/dev/null || echo '(not installed)')"
  done
}

init_data() {
  [ -d "$CHROOT$C_DATA/mysql" ] && return
  log "initialising MySQL 9.7 data in $CHROOT$C_DATA"
  rm -rf "${CHROOT:?}$C_DATA"
  mkdir -p "$CHROOT$C_FILES"
  # --initialize-insecure makes root@localhost with an empty password. With
  # skip-name-resolve a TCP client from 127.0.0.1 matches only '127.0.0.1'
  # accounts, so add that one with the same rights.
  cat >"$CHROOT$C_INIT" <<'EOF'
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
EOF
  in_chroot /usr/sbin/mysqld --no-defaults --user=root --initialize-insecure \
    --datadir="$C_DATA" --secure-file-priv="$C_FILES" --mysqlx=OFF \
    --init-file="$C_INIT" --log-error="$C_LOG" ||
    { tail -n 30 "$LOGFILE"; rm -rf "${CHROOT:?}$C_DATA"; die "mysqld --initialize-insecure failed"; }
}

cmd_up() {
  local port
  if pid_alive "$PIDFILE" && [ -s "$PORTFILE" ]; then
    port=$(cat "$PORTFILE")
    log "reusing MySQL 9.7 on port $port"
  else
    local t0=$SECONDS
    install_chroot
    log_versions
    init_data
    # The port of the last run if it is free, so saved DSNs stay valid.
    port=$(free_port "$(cat "$PORTFILE" 2>/dev/null || echo "$PREFERRED_PORT")")
    log "starting MySQL 9.7 on 127.0.0.1:$port (log: $LOGFILE)"
    rm -f "$PIDFILE"
    mkdir -p "$CHROOT$C_FILES"
    # Run as root inside the chroot: mysql-server-core creates no mysql user.
    # setsid and closed fds: the server outlives this script and keeps neither
    # the caller's $(...) pipe nor our lock open.
    setsid chroot "$CHROOT" /usr/sbin/mysqld --no-defaults --user=root \
      --datadir="$C_DATA" --socket="$C_SOCK" --pid-file="$C_PID" \
      --log-error="$C_LOG" --port="$port" --bind-address=127.0.0.1 \
      --mysqlx=OFF --secure-file-priv="$C_FILES" --skip-name-resolve \
      --character-set-server=utf8mb4 --max-connections=500 \
      </dev/null >/dev/null 2>&1 3>&- 9>&- &
    local pid=$!   # chroot execs mysqld: the same pid
    echo "$port" >"$PORTFILE"
    wait_for "MySQL 9.7" "$pid" "$LOGFILE" "$CHROOT$C_DATA" ping_server "$port"
    log "MySQL 9.7 up in $((SECONDS - t0))s: $(in_chroot mysql --no-defaults --protocol=TCP -h 127.0.0.1 -P "$port" -u root -N -e 'SELECT VERSION()')"
  fi
  ping_server "$port" || die "MySQL 9.7 on port $port does not answer root over TCP"
  emit RESERVATION_TEST_MYSQL_DSN "root@tcp(127.0.0.1:$port)/"
}

cmd_stop() { stop_pidfile "MySQL 9.7" "$PIDFILE" 60 "not running"; }

main() {
  local cmd=up
  for arg in "$@"; do
    case $arg in
      up) cmd=up ;;
      stop) cmd=stop ;;
      install) cmd=install ;;
      -h | --help) usage; exit 0 ;;
      *) usage; die "unknown argument: $arg" ;;
    esac
  done
  mkdir -p "$DIR"
  # Its own lock: services.sh may run at the same time.
  take_lock "$DIR/.mysql97.lock" 600
  case $cmd in
    up) cmd_up ;;
    stop) cmd_stop ;;
    install) install_chroot && log_versions ;;
  esac
}

main "$@"
