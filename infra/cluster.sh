#!/usr/bin/env bash
# A private Kafka (1 or 3 KRaft nodes) and PostgreSQL for the fault suite, on their own ports
# and state, so faults (kill, restart, stop a broker) never touch the shared servers of
# infra/local.sh. Same Kafka jars as infra/local.sh (.local/kafka/libs, fetched if missing).
#
#   infra/cluster.sh up [NODES]        start NODES Kafka nodes (1 or 3; default 1) + PostgreSQL
#   infra/cluster.sh down              stop everything and delete the state
#   infra/cluster.sh env               export lines (KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL)
#   infra/cluster.sh stop-kafka I [kill]   stop node I (SIGTERM, or SIGKILL with "kill")
#   infra/cluster.sh start-kafka I     start node I again (returns when it answers)
#   infra/cluster.sh restart-pg        restart PostgreSQL (fast shutdown, then start)
#
# Ports (override with env): node I listens on FAULTS_KAFKA_BASE+I (29190+I) and its controller
# on FAULTS_CONTROLLER_BASE+I (29290+I); PostgreSQL on FAULTS_PG_PORT (56500). State lives in
# FAULTS_DIR (.local/faults). Three nodes: replication 3 and min.insync.replicas 2 everywhere.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
DIR="${FAULTS_DIR:-$REPO/.local/faults}"
KAFKA_BASE="${FAULTS_KAFKA_BASE:-29190}"
CONTROLLER_BASE="${FAULTS_CONTROLLER_BASE:-29290}"
PG_PORT="${FAULTS_PG_PORT:-56500}"
LIBS="${FENXIAO_KAFKA_LIBS:-$REPO/.local/kafka/libs}"
PYTHON="${FENXIAO_PYTHON:-$REPO/.venv/bin/python}"
HEAP="${FAULTS_KAFKA_HEAP_OPTS:--Xmx320m -Xms128m}"
DSN="postgresql://fenxiao:fenxiao@127.0.0.1:$PG_PORT/fenxiao"

say() { printf '[cluster] %s\n' "$*"; }
die() { printf '[cluster] ERROR: %s\n' "$*" >&2; exit 1; }
is_root() { [[ "$(id -u)" -eq 0 ]]; }
as_pg() { if is_root; then runuser -u postgres -- "$@"; else "$@"; fi; }

nodes() { cat "$DIR/nodes" 2>/dev/null || echo 1; }
bootstrap() {
  local n i out=""
  n="$(nodes)"
  for ((i = 1; i <= n; i++)); do out+="${out:+,}127.0.0.1:$((KAFKA_BASE + i))"; done
  printf '%s' "$out"
}

pg_bin() {
  local d
  d="$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  [[ -x "$d/initdb" ]] || die "PostgreSQL server binaries not found (run infra/local.sh up once)"
  printf '%s' "$d"
}
# PostgreSQL refuses to run as root; as root its data lives in a postgres-owned folder.
pg_dir() {
  if is_root; then printf '/var/lib/postgresql/fenxiao-faults/%s' "$(printf '%s' "$DIR" | sha256sum | cut -c1-12)"
  else printf '%s/pg' "$DIR"; fi
}

fetch_libs() {
  [[ -d "$LIBS" && -n "$(ls "$LIBS"/*.jar 2>/dev/null)" ]] && return 0
  command -v mvn >/dev/null 2>&1 || die "Kafka jars missing at $LIBS and no mvn (run infra/local.sh up once)"
  say "downloading Kafka jars (infra/kafka/pom.xml) ..."
  mkdir -p "$LIBS" "$REPO/.local/m2"
  mvn -B -q -f "$REPO/infra/kafka/pom.xml" -Dmaven.repo.local="$REPO/.local/m2" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$LIBS" >/dev/null
}

kafka_props() { # kafka_props I N
  local i="$1" n="$2" voters="" j rf=1 isr=1
  for ((j = 1; j <= n; j++)); do voters+="${voters:+,}$j@127.0.0.1:$((CONTROLLER_BASE + j))"; done
  if ((n >= 3)); then rf=3; isr=2; fi
  cat <<EOF
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$((KAFKA_BASE + i)),CONTROLLER://127.0.0.1:$((CONTROLLER_BASE + i))
advertised.listeners=PLAINTEXT://127.0.0.1:$((KAFKA_BASE + i))
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DIR/kafka-$i/data
num.partitions=4
default.replication.factor=$rf
min.insync.replicas=$isr
auto.create.topics.enable=true
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
offsets.topic.num.partitions=10
transaction.state.log.num.partitions=10
share.coordinator.state.topic.num.partitions=10
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
log.retention.ms=-1
log.retention.bytes=-1
EOF
}

kafka_pid() { local f="$DIR/kafka-$1/pid"; [[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"; }

start_kafka() { # start_kafka I
  local i="$1" d="$DIR/kafka-$1"
  if kafka_pid "$i" >/dev/null; then return 0; fi
  # shellcheck disable=SC2086
  setsid nohup java $HEAP -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$REPO/infra/kafka/log4j2.yaml" -Dkafka.logs.dir="$d" \
    -cp "$LIBS/*" kafka.Kafka "$d/server.properties" </dev/null >>"$d/kafka.log" 2>&1 &
  echo $! >"$d/pid"
}

stop_kafka() { # stop_kafka I [kill]
  local i="$1" sig=TERM pid k
  [[ "${2:-}" == kill ]] && sig=KILL
  pid="$(kafka_pid "$i")" || return 0
  kill -"$sig" "$pid" 2>/dev/null || true
  for ((k = 0; k < 300; k++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$DIR/kafka-$i/pid"
}

wait_kafka() { # wait_kafka BOOTSTRAP
  "$PYTHON" "$REPO/infra/wait_ready.py" --no-postgres --no-txn --kafka "$1" --timeout 120 >/dev/null \
    || die "kafka at $1 did not become ready (logs in $DIR/kafka-*/kafka.log)"
}

pg_ctl_() { as_pg "$(pg_bin)/pg_ctl" -D "$(pg_dir)/data" "$@"; }

start_pg() {
  local pd bin
  pd="$(pg_dir)"; bin="$(pg_bin)"
  if [[ ! -f "$pd/data/PG_VERSION" ]]; then
    mkdir -p "$pd"
    if is_root; then chown postgres:postgres "$pd"; fi
    as_pg "$bin/initdb" -D "$pd/data" -U postgres -A trust -E UTF8 --no-locale >"$DIR/initdb.log" 2>&1 || die "initdb failed"
    {
      echo "port = $PG_PORT"; echo "listen_addresses = '127.0.0.1'"; echo "unix_socket_directories = '$pd'"
      echo "max_connections = 200"; echo "shared_buffers = 64MB"; echo "fsync = on"
    } | as_pg tee -a "$pd/data/postgresql.conf" >/dev/null
  fi
  pg_ctl_ status >/dev/null 2>&1 || pg_ctl_ -l "$pd/postgres.log" -w -t 60 start >/dev/null || die "postgres did not start"
  "$bin/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tA \
    -c "DO \$\$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname='fenxiao') THEN CREATE ROLE fenxiao LOGIN CREATEDB PASSWORD 'fenxiao'; END IF; END\$\$;" >/dev/null
  if [[ "$("$bin/psql" -X -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tA -c "SELECT 1 FROM pg_database WHERE datname='fenxiao'")" != 1 ]]; then
    "$bin/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c "CREATE DATABASE fenxiao OWNER fenxiao" >/dev/null
  fi
}

cmd_up() {
  local n="${1:-1}" i cid
  [[ "$n" == 1 || "$n" == 3 ]] || die "NODES must be 1 or 3"
  [[ -x "$PYTHON" ]] || die "$PYTHON missing: run uv sync"
  if [[ -f "$DIR/nodes" && "$(nodes)" != "$n" ]]; then cmd_down; fi
  mkdir -p "$DIR"; echo "$n" >"$DIR/nodes"
  fetch_libs
  cid="$(cat "$DIR/cluster.id" 2>/dev/null || true)"
  if [[ -z "$cid" ]]; then
    cid="$(java -cp "$LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"; echo "$cid" >"$DIR/cluster.id"
  fi
  for ((i = 1; i <= n; i++)); do
    mkdir -p "$DIR/kafka-$i"
    kafka_props "$i" "$n" >"$DIR/kafka-$i/server.properties"
    if [[ ! -f "$DIR/kafka-$i/data/meta.properties" ]]; then
      java -Xmx256m -cp "$LIBS/*" -Dlog4j2.configurationFile="$REPO/infra/kafka/log4j2.yaml" kafka.tools.StorageTool \
        format -t "$cid" -c "$DIR/kafka-$i/server.properties" >"$DIR/kafka-$i/format.log" 2>&1 || die "format of node $i failed"
    fi
    start_kafka "$i"
  done
  start_pg
  wait_kafka "$(bootstrap)"
  say "up: kafka $(bootstrap) ($n node(s)), postgres 127.0.0.1:$PG_PORT"
}

cmd_down() {
  local i
  for i in 1 2 3; do stop_kafka "$i" kill; done
  if [[ -f "$(pg_dir)/data/PG_VERSION" ]]; then pg_ctl_ -m immediate -w stop >/dev/null 2>&1 || true; fi
  rm -rf "$DIR" "$(pg_dir)"
  say "down"
}

case "${1:-}" in
  up) cmd_up "${2:-1}" ;;
  down) cmd_down ;;
  env) printf 'export KAFKA_BOOTSTRAP_SERVERS=%s\nexport DATABASE_URL=%s\n' "$(bootstrap)" "$DSN" ;;
  stop-kafka) stop_kafka "$2" "${3:-}" ;;
  start-kafka) start_kafka "$2"; wait_kafka "127.0.0.1:$((KAFKA_BASE + $2))" ;;
  restart-pg) pg_ctl_ -m fast -w stop >/dev/null; start_pg ;;
  *) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
