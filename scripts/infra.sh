#!/usr/bin/env bash
# Brings Kilat's infrastructure up or down, idempotently, on a fresh machine:
#   - Apache Kafka (KRaft, single node) on 127.0.0.1:${KAFKA_PORT:-9092}, jars from Maven Central
#   - PostgreSQL + PostGIS from Debian's packages (skipped when DATABASE_URL points elsewhere)
#
# Usage: scripts/infra.sh up|down|status
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${KILAT_CACHE_DIR:-${HOME:-/root}/.cache/kilat}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_HOME="$CACHE/kafka"
KAFKA_LIBS="$KAFKA_HOME/libs"
KAFKA_DATA="$KAFKA_HOME/data-$KAFKA_PORT"
KAFKA_PID="$KAFKA_HOME/broker-$KAFKA_PORT.pid"
KAFKA_LOG="$KAFKA_HOME/broker-$KAFKA_PORT.log"
PG_VERSION="${PG_VERSION:-15}"
PG_USER="${PG_USER:-kilat}"
PG_PASSWORD="${PG_PASSWORD:-kilat}"
PG_DB="${PG_DB:-kilat}"

log() { printf '[infra] %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {  # wait_port PORT SECONDS NAME
  local deadline=$((SECONDS + $2))
  until port_open "$1"; do
    if ((SECONDS > deadline)); then log "$3 did not open port $1 in $2 s"; return 1; fi
    sleep 0.5
  done
}

kafka_fetch() {
  local pom="$ROOT/scripts/kafka/pom.xml"
  local stamp; stamp="$(sha256sum "$pom" | cut -c1-16)"
  if [[ -f "$KAFKA_LIBS/.stamp" && "$(cat "$KAFKA_LIBS/.stamp")" == "$stamp" ]]; then return 0; fi
  command -v mvn >/dev/null || { log "installing maven"; apt-get install -y -qq maven >/dev/null; }
  log "fetching Kafka jars from Maven Central into $KAFKA_LIBS"
  rm -rf "$KAFKA_LIBS"; mkdir -p "$KAFKA_LIBS"
  mvn -q -B -f "$pom" dependency:copy-dependencies -DoutputDirectory="$KAFKA_LIBS" >&2
  echo "$stamp" >"$KAFKA_LIBS/.stamp"
}

kafka_up() {
  if port_open "$KAFKA_PORT"; then log "Kafka already listening on $KAFKA_PORT"; return 0; fi
  command -v java >/dev/null || { log "installing Java 17"; apt-get install -y -qq openjdk-17-jre-headless >/dev/null; }
  kafka_fetch
  mkdir -p "$KAFKA_DATA"
  local props="$KAFKA_HOME/server-$KAFKA_PORT.properties"
  sed -e "s#@KAFKA_PORT@#$KAFKA_PORT#g" -e "s#@CONTROLLER_PORT@#$CONTROLLER_PORT#g" \
      -e "s#@DATA_DIR@#$KAFKA_DATA#g" "$ROOT/scripts/kafka/server.properties" >"$props"
  local cp="$KAFKA_LIBS/*"
  if [[ ! -f "$KAFKA_DATA/meta.properties" ]]; then
    log "formatting KRaft storage in $KAFKA_DATA"
    local cluster_id; cluster_id="$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
    java -cp "$cp" -Dlog4j.configuration="file:$ROOT/scripts/kafka/log4j.properties" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "$props" >&2
  fi
  log "starting Kafka on 127.0.0.1:$KAFKA_PORT"
  nohup java -Xms256m -Xmx1g -cp "$cp" \
    -Dlog4j.configuration="file:$ROOT/scripts/kafka/log4j.properties" \
    kafka.Kafka "$props" >"$KAFKA_LOG" 2>&1 &
  echo $! >"$KAFKA_PID"
  wait_port "$KAFKA_PORT" 240 Kafka || { tail -n 40 "$KAFKA_LOG" >&2; return 1; }
  log "Kafka is up (log: $KAFKA_LOG)"
}

kafka_down() {
  if [[ -f "$KAFKA_PID" ]] && kill -0 "$(cat "$KAFKA_PID")" 2>/dev/null; then
    log "stopping Kafka"
    kill "$(cat "$KAFKA_PID")"
    local deadline=$((SECONDS + 30))
    while kill -0 "$(cat "$KAFKA_PID")" 2>/dev/null; do
      ((SECONDS > deadline)) && { kill -9 "$(cat "$KAFKA_PID")"; break; }
      sleep 0.5
    done
  fi
  rm -f "$KAFKA_PID"
}

pg_external() { [[ -n "${DATABASE_URL:-}" && "${DATABASE_URL}" != *"@127.0.0.1"* && "${DATABASE_URL}" != *"@localhost"* ]]; }

pg_up() {
  if pg_external; then log "using external PostgreSQL from DATABASE_URL"; return 0; fi
  if [[ ! -x "/usr/lib/postgresql/$PG_VERSION/bin/postgres" ]] || \
     [[ ! -f "/usr/share/postgresql/$PG_VERSION/extension/postgis.control" ]]; then
    log "installing PostgreSQL $PG_VERSION + PostGIS from Debian packages"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      "postgresql-$PG_VERSION" "postgresql-$PG_VERSION-postgis-3" >/dev/null
  fi
  if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -q "^$PG_VERSION main$"; then
    pg_createcluster "$PG_VERSION" main >/dev/null
  fi
  if ! pg_lsclusters -h | awk '$1=="'"$PG_VERSION"'" && $2=="main" {print $4}' | grep -q online; then
    log "starting PostgreSQL $PG_VERSION"
    pg_ctlcluster "$PG_VERSION" main start
  fi
  wait_port 5432 60 PostgreSQL
  # Local development role: superuser so tests can create throw-away databases with PostGIS.
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='$PG_USER'\"" | grep -q 1 || \
    su postgres -c "psql -qc \"CREATE ROLE $PG_USER LOGIN SUPERUSER PASSWORD '$PG_PASSWORD'\""
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='$PG_DB'\"" | grep -q 1 || \
    su postgres -c "createdb -O $PG_USER $PG_DB"
  su postgres -c "psql -q -d $PG_DB -c 'CREATE EXTENSION IF NOT EXISTS postgis; CREATE EXTENSION IF NOT EXISTS \"uuid-ossp\";'"
  log "PostgreSQL is up (database $PG_DB)"
}

pg_down() {
  if pg_external; then return 0; fi
  if command -v pg_ctlcluster >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q "^$PG_VERSION \+main .*online"; then
    log "stopping PostgreSQL"
    pg_ctlcluster "$PG_VERSION" main stop
  fi
}

case "${1:-up}" in
  up) pg_up; kafka_up ;;
  down) kafka_down; pg_down ;;
  kafka-up) kafka_up ;;
  kafka-down) kafka_down ;;
  pg-up) pg_up ;;
  pg-down) pg_down ;;
  status)
    port_open "$KAFKA_PORT" && echo "kafka: up ($KAFKA_PORT)" || echo "kafka: down"
    port_open 5432 && echo "postgres: up (5432)" || echo "postgres: down" ;;
  *) echo "usage: $0 up|down|status|kafka-up|kafka-down|pg-up|pg-down" >&2; exit 2 ;;
esac
