#!/usr/bin/env bash
# deploy/cluster.sh: a local GoIM cluster of real processes (goim cluster) in
# the background, for scripts such as `make bench-full`.
#
#   deploy/cluster.sh up     start it (COMETS, LOGICS, JOBS, MYSQL_DSN, REDIS_ADDR,
#                            KAFKA_BROKERS, ETCD_ENDPOINTS; BENCH_USERS=N seeds N users)
#   deploy/cluster.sh env    print its addresses as shell assignments (eval them)
#   deploy/cluster.sh down   stop it (graceful: comets drain first)
#
# `make cluster` runs the same cluster in the foreground instead (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR=${RUN_DIR:-data/cluster}
BIN=${BIN:-bin/goim}
PID_FILE=$RUN_DIR/cluster.pid
READY=$RUN_DIR/ready.env
MYSQL_DSN=${MYSQL_DSN:-root@tcp(127.0.0.1:3306)/goim_cluster}
REDIS_ADDR=${REDIS_ADDR:-127.0.0.1:6379}

value() { grep "^$1=" "$READY" | cut -d= -f2-; }

case "${1:-}" in
up)
  if [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
    echo "cluster.sh: already running (pid $(cat "$PID_FILE"))" >&2; exit 1
  fi
  [ -x "$BIN" ] || go build -o "$BIN" ./cmd/goim
  mkdir -p "$RUN_DIR"
  rm -f "$READY"
  "$BIN" cluster --dir "$RUN_DIR" --ready-file "$READY" \
    --comets "${COMETS:-6}" --logics "${LOGICS:-1}" --jobs "${JOBS:-2}" \
    --mysql-dsn "$MYSQL_DSN" --redis-addr "$REDIS_ADDR" \
    --kafka-brokers "${KAFKA_BROKERS:-}" --etcd-endpoints "${ETCD_ENDPOINTS:-}" \
    >"$RUN_DIR/cluster.log" 2>&1 &
  echo $! >"$PID_FILE"
  for _ in $(seq 1 240); do
    [ -f "$READY" ] && break
    if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
      echo "cluster.sh: the cluster exited; $RUN_DIR/cluster.log ends with:" >&2
      tail -20 "$RUN_DIR/cluster.log" >&2; exit 1
    fi
    sleep 0.5
  done
  [ -f "$READY" ] || { echo "cluster.sh: not up after 120s (see $RUN_DIR/cluster.log)" >&2; exit 1; }
  if [ -n "${BENCH_USERS:-}" ]; then
    GOIM_STORE=mysql GOIM_MYSQL_DSN="$MYSQL_DSN" "$BIN" users seed --count "$BENCH_USERS" --prefix bench \
      >"$RUN_DIR/users.json"
  fi
  echo "cluster.sh: up (pid $(cat "$PID_FILE")); logs in $RUN_DIR"
  cat "$READY"
  ;;
env)
  [ -f "$READY" ] || { echo "cluster.sh: not running" >&2; exit 1; }
  echo "GOIM_COMET_ADDRS=$(value tcp)"
  echo "GOIM_COMET_WS_ADDRS=$(value ws)"
  echo "GOIM_COMET_PIDS=$(value comet_pids)"
  echo "GOIM_HTTP_ADDR=$(value http | cut -d, -f1)"
  echo "GOIM_JWT_SECRET=$(cat "$RUN_DIR/jwt.secret")"
  [ -f "$RUN_DIR/users.json" ] && echo "GOIM_BENCH_USERS=$RUN_DIR/users.json"
  true
  ;;
down)
  if [ -f "$PID_FILE" ]; then
    pid=$(cat "$PID_FILE")
    if kill -TERM "$pid" 2>/dev/null; then
      for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -0 "$pid" 2>/dev/null && { echo "cluster.sh: still running after 60s; killing" >&2; kill -KILL "$pid"; }
    fi
    rm -f "$PID_FILE" "$READY"
  fi
  echo "cluster.sh: down"
  ;;
*)
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2
  ;;
esac
