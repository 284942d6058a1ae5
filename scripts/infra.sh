#!/usr/bin/env bash
# Brings Kilat's infrastructure up or down, idempotently, on a fresh machine:
#   - Apache Kafka (KRaft, single node) on 127.0.0.1:${KAFKA_PORT:-9092}, jars from Maven Central;
#     with KAFKA_CLUSTER=3, a three-broker KRaft cluster instead, from the same jars, on
#     127.0.0.1:19092,19093,19094 (controllers on 19192…, data in $CACHE/kafka/cluster-<port>);
#     the single broker, if running, is left alone
#   - PostgreSQL + PostGIS from Debian's packages (skipped when DATABASE_URL points elsewhere)
#
# Usage: scripts/infra.sh up|down|status
#        scripts/infra.sh cluster-down         # stop the three-broker cluster only
#        scripts/infra.sh cluster-brokers      # its KAFKA_BROKERS
#        scripts/infra.sh cluster-controller   # node id of the cluster's active controller
#        scripts/infra.sh cluster-pid NODE     # process id of cluster node NODE (1..3)
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
KAFKA_CLUSTER="${KAFKA_CLUSTER:-1}"
CLUSTER_BASE_PORT="${KAFKA_CLUSTER_BASE_PORT:-19092}"
CLUSTER_NODES=3
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

java_ready() {
  command -v java >/dev/null || { log "installing Java 17"; apt-get install -y -qq openjdk-17-jre-headless >/dev/null; }
  kafka_fetch
}

kafka_node_up() {  # kafka_node_up PROPS_FILE DATA_DIR PORT PID_FILE LOG_FILE CLUSTER_ID HEAP
  local props="$1" data="$2" port="$3" pidfile="$4" logfile="$5" cluster_id="$6" heap="$7"
  local cp="$KAFKA_LIBS/*"
  if [[ ! -f "$data/meta.properties" ]]; then
    log "formatting KRaft storage in $data"
    java -cp "$cp" -Dlog4j.configuration="file:$ROOT/scripts/kafka/log4j.properties" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "$props" >&2
  fi
  log "starting Kafka on 127.0.0.1:$port"
  nohup java -Xms256m "-Xmx$heap" -cp "$cp" \
    -Dlog4j.configuration="file:$ROOT/scripts/kafka/log4j.properties" \
    kafka.Kafka "$props" >"$logfile" 2>&1 &
  echo $! >"$pidfile"
}

kafka_up() {
  if ((KAFKA_CLUSTER > 1)); then cluster_up; return; fi
  if port_open "$KAFKA_PORT"; then log "Kafka already listening on $KAFKA_PORT"; return 0; fi
  java_ready
  mkdir -p "$KAFKA_DATA"
  local props="$KAFKA_HOME/server-$KAFKA_PORT.properties"
  sed -e "s#@KAFKA_PORT@#$KAFKA_PORT#g" -e "s#@CONTROLLER_PORT@#$CONTROLLER_PORT#g" \
      -e "s#@DATA_DIR@#$KAFKA_DATA#g" "$ROOT/scripts/kafka/server.properties" >"$props"
  local cluster_id=""
  if [[ ! -f "$KAFKA_DATA/meta.properties" ]]; then
    cluster_id="$(java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
  fi
  kafka_node_up "$props" "$KAFKA_DATA" "$KAFKA_PORT" "$KAFKA_PID" "$KAFKA_LOG" "$cluster_id" 1g
  wait_port "$KAFKA_PORT" 240 Kafka || { tail -n 40 "$KAFKA_LOG" >&2; return 1; }
  log "Kafka is up (log: $KAFKA_LOG)"
}

node_port() { echo $((CLUSTER_BASE_PORT + $1 - 1)); }
node_controller_port() { echo $((CLUSTER_BASE_PORT + 100 + $1 - 1)); }
node_file() { echo "$KAFKA_HOME/cluster-$(node_port "$1")$2"; }  # node_file NODE SUFFIX

cluster_up() {
  if ((KAFKA_CLUSTER != CLUSTER_NODES)); then log "KAFKA_CLUSTER must be 1 or $CLUSTER_NODES"; return 2; fi
  java_ready
  local id_file="$KAFKA_HOME/cluster.id" voters="" node
  [[ -s "$id_file" ]] || java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1 >"$id_file"
  for node in $(seq 1 $CLUSTER_NODES); do
    voters+="${voters:+,}$node@127.0.0.1:$(node_controller_port "$node")"
  done
  for node in $(seq 1 $CLUSTER_NODES); do
    local port; port="$(node_port "$node")"
    if port_open "$port"; then log "cluster node $node already listening on $port"; continue; fi
    mkdir -p "$(node_file "$node" "")"
    sed -e "s#@NODE_ID@#$node#g" -e "s#@QUORUM_VOTERS@#$voters#g" -e "s#@KAFKA_PORT@#$port#g" \
        -e "s#@CONTROLLER_PORT@#$(node_controller_port "$node")#g" \
        -e "s#@DATA_DIR@#$(node_file "$node" "")#g" \
        "$ROOT/scripts/kafka/cluster.properties" >"$(node_file "$node" .properties)"
    kafka_node_up "$(node_file "$node" .properties)" "$(node_file "$node" "")" "$port" \
      "$(node_file "$node" .pid)" "$(node_file "$node" .log)" "$(cat "$id_file")" 512m
  done
  for node in $(seq 1 $CLUSTER_NODES); do
    wait_port "$(node_port "$node")" 240 "cluster node $node" || { tail -n 40 "$(node_file "$node" .log)" >&2; return 1; }
  done
  log "Kafka cluster is up: KAFKA_BROKERS=$(cluster_brokers)"
}

cluster_brokers() {
  local node out=""
  for node in $(seq 1 $CLUSTER_NODES); do out+="${out:+,}127.0.0.1:$(node_port "$node")"; done
  echo "$out"
}

cluster_controller() {  # the leader of the metadata quorum, as the nodes last recorded it
  local node best_epoch=-1 leader=""
  for node in $(seq 1 $CLUSTER_NODES); do
    local state; state="$(node_file "$node" "")/__cluster_metadata-0/quorum-state"
    [[ -f "$state" ]] || continue
    local epoch id
    epoch="$(grep -o '"leaderEpoch":[0-9-]*' "$state" | cut -d: -f2)"
    id="$(grep -o '"leaderId":[0-9-]*' "$state" | cut -d: -f2)"
    if [[ -n "$epoch" && "$epoch" -gt "$best_epoch" && "$id" -gt 0 ]]; then best_epoch="$epoch"; leader="$id"; fi
  done
  [[ -n "$leader" ]] && echo "$leader"
}

stop_pid_file() {  # stop_pid_file PID_FILE NAME
  if [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; then
    log "stopping $2"
    kill "$(cat "$1")"
    local deadline=$((SECONDS + 30))
    while kill -0 "$(cat "$1")" 2>/dev/null; do
      ((SECONDS > deadline)) && { kill -9 "$(cat "$1")"; break; }
      sleep 0.5
    done
  fi
  rm -f "$1"
}

cluster_down() {
  local node
  for node in $(seq 1 $CLUSTER_NODES); do
    stop_pid_file "$(node_file "$node" .pid)" "Kafka cluster node $node"
  done
}

kafka_down() { stop_pid_file "$KAFKA_PID" Kafka; cluster_down; }

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
  cluster-down) cluster_down ;;
  cluster-brokers) cluster_brokers ;;
  cluster-controller) cluster_controller ;;
  cluster-pid) cat "$(node_file "${2:?node}" .pid)" ;;
  status)
    port_open "$KAFKA_PORT" && echo "kafka: up ($KAFKA_PORT)" || echo "kafka: down"
    for node in $(seq 1 $CLUSTER_NODES); do
      port_open "$(node_port "$node")" && echo "kafka cluster node $node: up ($(node_port "$node"))" || true
    done
    port_open 5432 && echo "postgres: up (5432)" || echo "postgres: down" ;;
  *) echo "usage: $0 up|down|status|kafka-up|kafka-down|pg-up|pg-down|cluster-down|cluster-brokers|cluster-controller|cluster-pid N" >&2; exit 2 ;;
esac
