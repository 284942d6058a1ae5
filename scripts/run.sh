#!/usr/bin/env bash
# Runs the whole platform locally: Kafka + PostGIS, N Faust workers and the gateway on :8080.
# Ctrl-C stops the workers and the gateway (the infrastructure keeps running; `make down`).
#   WORKERS=2 scripts/run.sh     # two workers on 6066 and 6067
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/bootstrap.sh
scripts/infra.sh up
scripts/migrate.sh
WORKERS="${WORKERS:-1}"
BASE_PORT="${WEB_PORT:-6066}"
mkdir -p var/log
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
upstream=""
for ((i = 0; i < WORKERS; i++)); do
  port=$((BASE_PORT + i))
  KILAT_DATA_DIR="var/worker-$port" WEB_PORT="$port" \
    .venv/bin/faust -A kilat worker -l info --web-port "$port" >"var/log/worker-$port.log" 2>&1 &
  pids+=($!)
  upstream+="${upstream:+,}http://127.0.0.1:$port"
  echo "[run] worker on :$port (log var/log/worker-$port.log)"
done
KILAT_UPSTREAM="$upstream" .venv/bin/kilat-gateway >var/log/gateway.log 2>&1 &
pids+=($!)
echo "[run] gateway on :${GATEWAY_PORT:-8080} (log var/log/gateway.log)"
for ((i = 0; i < 120; i++)); do
  if curl -fsS "http://127.0.0.1:$BASE_PORT/readiness" >/dev/null 2>&1; then
    echo "[run] Kilat is ready: http://localhost:${GATEWAY_PORT:-8080}"; break
  fi
  sleep 1
done
wait -n "${pids[@]}"
