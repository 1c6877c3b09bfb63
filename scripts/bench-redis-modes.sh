#!/usr/bin/env bash
# rsvbench spread and hot against one reservationd whose lock is on a standalone Redis, then on
# a private Redis Cluster of 3 masters and 3 replicas (on free loopback ports under a temporary
# directory), in one sitting. MySQL and the standalone Redis come from scripts/services.sh.
#
#   bash scripts/bench-redis-modes.sh [DURATION]      # default 10s per run
#   WORKLOADS=hot ORDER="cluster standalone cluster standalone" bash scripts/bench-redis-modes.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DURATION=${1:-10s}
eval "$(bash scripts/services.sh)"
TMP=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

go build -o "$TMP/" ./cmd/reservationd ./cmd/rsvbench
MYSQL=$(command -v mariadb || command -v mysql)
dsn_base=${RESERVATION_TEST_MYSQL_DSN%/*}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# A cluster node also listens on its port + 10000 (the cluster bus).
port_free() { python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1])))' "$1" 2>/dev/null; }
cluster_port() {
  local p
  while :; do p=$(free_port); [ "$p" -le 55535 ] && port_free $((p + 10000)) && { echo "$p"; return; }; done
}

# The cluster.
nodes=()
for i in 1 2 3 4 5 6; do
  port=$(cluster_port); mkdir -p "$TMP/node$i"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP/node$i" \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 1000 \
    --logfile "$TMP/node$i/log" --daemonize no & pids+=($!)
  nodes+=("127.0.0.1:$port")
done
for n in "${nodes[@]}"; do until redis-cli -p "${n##*:}" ping >/dev/null 2>&1; do sleep 0.1; done; done
redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
until redis-cli -p "${nodes[0]##*:}" cluster info | grep -q cluster_state:ok; do sleep 0.1; done

run() { # NAME ENV...
  local name=$1; shift
  local db="rsvbench_$name" grpc http
  "$MYSQL" --no-defaults --protocol=TCP -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $db; CREATE DATABASE $db"
  grpc=127.0.0.1:$(free_port); http=127.0.0.1:$(free_port)
  env RESERVATION_MYSQL_DSN="$dsn_base/$db" RESERVATION_GRPC_ADDR="$grpc" RESERVATION_HTTP_ADDR="$http" \
    RESERVATION_LOG_LEVEL=warn "$@" "$TMP/reservationd" 2>"$TMP/$name.log" & local pid=$!
  until curl -sf "http://$http/readyz" >/dev/null; do sleep 0.2; done
  for w in ${WORKLOADS:-spread hot}; do
    echo "== $name: $w"
    "$TMP/rsvbench" --addr "$grpc" --workload "$w" --duration "$DURATION" --verify-dsn "$dsn_base/$db"
  done
  echo "== $name: lock_bypassed_total $(curl -s "http://$http/metrics" | awk '/^reservation_lock_bypassed_total/ {print $2}')"
  kill "$pid"; wait "$pid" || true
}

for mode in ${ORDER:-standalone cluster}; do
  case $mode in
    standalone) run standalone RESERVATION_REDIS_ADDR="$RESERVATION_REDIS_ADDR" ;;
    cluster) run cluster RESERVATION_REDIS_MODE=cluster RESERVATION_REDIS_ADDR="$(IFS=,; echo "${nodes[*]}")" ;;
    *) echo "unknown mode $mode" >&2; exit 1 ;;
  esac
done
