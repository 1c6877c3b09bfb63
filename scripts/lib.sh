# shellcheck shell=bash
# Helpers shared by the scripts that start servers and print `export` lines
# (services.sh, mysql97.sh, galera.sh, replication.sh, vitess.sh). Each one
# sources it after its `set -euo pipefail`:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Sourcing it moves the real stdout to fd 3, for the export lines only (the
# caller evals them), and sends everything else the script writes to stderr.
# Messages carry the name of the script that sourced this file.

# The sourcing script: its name for messages, its path for usage.
SCRIPT_PATH=${BASH_SOURCE[1]}
SCRIPT=${SCRIPT_PATH##*/}

# The caller evals our stdout, so only the export lines may go there: keep the
# real stdout as fd 3 and send everything else (apt, our messages) to stderr.
exec 3>&1 1>&2

log() { echo "$SCRIPT: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Single-quote a value so `eval` gets it back verbatim.
shquote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
# emit NAME VALUE: one `export` line on the real stdout.
emit() { printf 'export %s=%s\n' "$1" "$(shquote "$2")" >&3; }

is_root() { [ "$(id -u)" = 0 ]; }

# usage: the script's header comment (line 2 up to `set -euo`), on stderr.
usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$SCRIPT_PATH" >&2
}

# take_lock FILE SECONDS: hold FILE locked on fd 9 until the script exits, so
# that concurrent runs do not both start (or stop) the same servers. Servers
# started later must close fd 9 (9>&-), or they would keep the lock.
take_lock() {
  exec 9>"$1"
  flock -w "$2" 9 || die "another $SCRIPT holds $1"
}

# apt_install PKG...: install Debian packages, only possible as root.
apt_install() {
  is_root || die "$* not installed and not root: run 'sudo apt-get install -y $*'"
  command -v apt-get >/dev/null || die "$* not installed and no apt-get to install it with"
  log "installing $* with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "$@" >&2
}

# True if something accepts TCP connections on 127.0.0.1:$1.
port_in_use() { (exec 5<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port [PREFERRED]: PREFERRED if it is free, else a random free port not
# yet handed out by this shell (TAKEN: for several ports in a row, called as
# `{ free_port; free_port; } >file` rather than in $(...), a subshell).
# Bash's /dev/tcp needs no extra tools (ss/python may be missing on a fresh machine).
TAKEN=" "
free_port() {
  local p=${1:-}
  if [ -n "$p" ] && ! port_in_use "$p"; then TAKEN+="$p "; echo "$p"; return; fi
  for _ in $(seq 200); do
    p=$((10000 + RANDOM % 22000)) # below the ephemeral range (32768-60999): a client socket may hold any port there, and bind would fail
    [[ $TAKEN == *" $p "* ]] && continue
    port_in_use "$p" && continue
    TAKEN+="$p "
    echo "$p"; return
  done
  die "no free TCP port found"
}

# alive PID: the process runs. A script may redefine it (galera.sh counts a
# zombie as dead); pid_alive and stop_pidfile use whichever is defined.
alive() { kill -0 "$1" 2>/dev/null; }
# pid_alive PIDFILE: the process named in PIDFILE runs.
pid_alive() { [ -s "$1" ] && alive "$(cat "$1")"; }

# wait_for DESCRIPTION PID LOGFILE DATA CHECK...: poll CHECK every 0.5 s until
# it succeeds, for at most WAIT_SECONDS; fail early if process PID died. On
# failure, show the log's tail and how to start over from empty DATA.
wait_for() {
  local what=$1 pid=$2 logfile=$3 data=$4; shift 4
  local deadline=$((SECONDS + WAIT_SECONDS))
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ] || ! kill -0 "$pid" 2>/dev/null; then
      log "$what did not come up within ${WAIT_SECONDS}s; last lines of $logfile:"
      tail -n 30 "$logfile" >&2 2>/dev/null || true
      log "to start over from empty data: $0 stop; rm -rf '$data'"
      exit 1
    fi
    sleep 0.5
  done
}

# stop_pidfile NAME PIDFILE [SECONDS [IDLE_TEXT [FILE...]]]: TERM the process
# of PIDFILE, wait up to SECONDS (30) for it to exit, then KILL; then remove
# PIDFILE and the FILEs. When none runs, say "NAME: IDLE_TEXT" and leave them.
stop_pidfile() {
  local name=$1 pidfile=$2 seconds=${3:-30} idle=${4:-no private instance running} pid
  shift $(($# < 4 ? $# : 4))
  if ! pid_alive "$pidfile"; then
    log "$name: $idle"
    return
  fi
  pid=$(cat "$pidfile")
  log "$name: stopping pid $pid"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq $((seconds * 2))); do
    alive "$pid" || break
    sleep 0.5
  done
  if alive "$pid"; then
    log "$name: pid $pid still running after ${seconds}s, killing it"
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile" "$@"
}
