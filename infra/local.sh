#!/usr/bin/env bash
# Project-local infrastructure for fenxiao: Kafka 4.1.1 (single-node KRaft,
# broker+controller) and PostgreSQL (15 preferred) running as plain processes,
# with all state under <repo>/.local/ (git-ignored). No Docker needed.
#
#   infra/local.sh up       start both (idempotent); returns when both are ready
#   infra/local.sh down     stop both gracefully (idempotent)
#   infra/local.sh status   show state; exit 0 if both are up, 3 otherwise
#   infra/local.sh env      print export lines:  eval "$(infra/local.sh env)"
#   infra/local.sh reset    down + delete Kafka and PostgreSQL data (keeps jars)
#
# See docs/local-infra.md.
set -euo pipefail

# --------------------------------------------------------------------------- #
# Layout / constants
# --------------------------------------------------------------------------- #
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
INFRA="$REPO/infra"
LOCAL="$REPO/.local"

KAFKA_HOST=127.0.0.1
KAFKA_PORT=${FENXIAO_KAFKA_PORT:-19092}
CONTROLLER_PORT=${FENXIAO_KAFKA_CONTROLLER_PORT:-19093}
KAFKA_DIR="$LOCAL/kafka"
KAFKA_LIBS="$KAFKA_DIR/libs"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_LOG="$KAFKA_DIR/kafka.log"
KAFKA_PID="$KAFKA_DIR/kafka.pid"
KAFKA_PROPS="$KAFKA_DIR/server.properties"
KAFKA_CLUSTER_ID_FILE="$KAFKA_DIR/cluster.id"
KAFKA_HEAP_OPTS="${FENXIAO_KAFKA_HEAP_OPTS:--Xmx768m -Xms256m}"
KAFKA_STOP_TIMEOUT=30

PG_HOST=127.0.0.1
PG_PORT=${FENXIAO_PG_PORT:-55432}

# Where PostgreSQL keeps its data. The server runs as the `postgres` OS user when this
# script runs as root, and that user may not be able to traverse the checkout's parents
# (a clone under /root or `mktemp -d` is mode 700). So, as root, the data lives in a
# per-checkout folder under a system location owned by `postgres`, named from the
# checkout path; as an ordinary user it stays in the checkout (the server runs as that
# user). A data directory made by an earlier version in .local/postgres keeps being used.
# FENXIAO_PG_DIR overrides all of this.
PG_SYSTEM_ROOT="${FENXIAO_PG_SYSTEM_ROOT:-/var/lib/postgresql/fenxiao}"
checkout_slug() { # basename-<12 hex of the checkout path>: stable, unique per checkout
  local base
  base="$(basename "$REPO")"
  base="$(printf '%s' "$base" | tr -c 'A-Za-z0-9._-' '_' | cut -c1-40)"
  printf '%s-%s' "$base" "$(printf '%s' "$REPO" | sha256sum | cut -c1-12)"
}
resolve_pg_dir() {
  if [[ -n "${FENXIAO_PG_DIR:-}" ]]; then printf '%s' "$FENXIAO_PG_DIR"; return; fi
  if [[ -f "$LOCAL/postgres/data/PG_VERSION" ]]; then printf '%s' "$LOCAL/postgres"; return; fi
  if [[ "$(id -u)" -ne 0 ]]; then printf '%s' "$LOCAL/postgres"; return; fi
  printf '%s/%s' "$PG_SYSTEM_ROOT" "$(checkout_slug)"
}
PG_DIR="$(resolve_pg_dir)"
PG_DATA="$PG_DIR/data"
PG_LOG="$PG_DIR/postgres.log"
PG_SUPERUSER_PWFILE="$PG_DIR/superuser.pw"
PG_APP_USER=fenxiao
PG_APP_PASSWORD=fenxiao
PG_APP_DB=fenxiao
PG_PREFERRED_MAJOR=15

KAFKA_BOOTSTRAP="$KAFKA_HOST:$KAFKA_PORT"
DATABASE_URL_LOCAL="postgresql://$PG_APP_USER:$PG_APP_PASSWORD@$PG_HOST:$PG_PORT/$PG_APP_DB"

PYTHON="${FENXIAO_PYTHON:-$REPO/.venv/bin/python}"
READY_TIMEOUT="${FENXIAO_READY_TIMEOUT:-90}"
READY_VERBOSE=()
if [[ -n "${FENXIAO_INFRA_VERBOSE:-}" ]]; then READY_VERBOSE=(-v); fi

# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #
say() { printf '[infra] %s\n' "$*"; }
warn() { printf '[infra] WARNING: %s\n' "$*" >&2; }
die() { printf '[infra] ERROR: %s\n' "$*" >&2; exit 1; }

tail_log() { # tail_log FILE [N]
  local f="$1" n="${2:-40}"
  if [[ -r "$f" ]]; then
    printf '[infra] ---- last %s lines of %s ----\n' "$n" "$f" >&2
    tail -n "$n" "$f" >&2 || true
    printf '[infra] ---- end of log ----\n' >&2
  else
    printf '[infra] (no log at %s)\n' "$f" >&2
  fi
}

now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }

port_open() { # port_open PORT  (loopback only)
  timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# Serialise up/down/reset between concurrent callers (e.g. two test runs).
# fd 9 is closed explicitly for every long-running child (9>&-), otherwise the
# daemons would inherit and hold the lock forever.
take_lock() {
  mkdir -p "$LOCAL"
  exec 9>"$LOCAL/.lock"
  if ! flock -w 300 9; then die "another infra/local.sh is holding $LOCAL/.lock for >300s"; fi
}

as_root_cmd() { # run a command as root (directly, or via sudo)
  if is_root; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root (or sudo) to run: $*"
  fi
}

apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not available; install manually: $*"
  say "installing via apt: $*"
  as_root_cmd env DEBIAN_FRONTEND=noninteractive apt-get update -q 9>&-
  as_root_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" 9>&-
}

# --------------------------------------------------------------------------- #
# Prerequisites
# --------------------------------------------------------------------------- #
ensure_java_mvn() {
  local missing=()
  command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
  # mvn is only needed when the Kafka jars are not downloaded yet.
  if ! command -v mvn >/dev/null 2>&1 && ! libs_ok; then missing+=(maven); fi
  if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
  command -v java >/dev/null 2>&1 || die "java still not found after install"
}

PG_BIN=""
find_pg_bin() {
  if [[ -n "${FENXIAO_PG_BIN:-}" ]]; then PG_BIN="$FENXIAO_PG_BIN"; return 0; fi
  if [[ -x "/usr/lib/postgresql/$PG_PREFERRED_MAJOR/bin/initdb" ]]; then
    PG_BIN="/usr/lib/postgresql/$PG_PREFERRED_MAJOR/bin"; return 0
  fi
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [[ -n "$d" && -x "$d/initdb" ]]; then PG_BIN="$d"; return 0; fi
  return 1
}

ensure_pg_bin() {
  if ! find_pg_bin; then
    say "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin"
    if ! apt_install "postgresql-$PG_PREFERRED_MAJOR" 2>/dev/null; then
      apt_install postgresql
    fi
    find_pg_bin || die "PostgreSQL binaries still not found after apt install"
  fi
  if is_root && ! id -u postgres >/dev/null 2>&1; then
    say "creating system user postgres"
    useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home --shell /usr/sbin/nologin postgres
  fi
}

ensure_python() {
  [[ -x "$PYTHON" ]] || die "$PYTHON not found - run 'uv sync' first (or set FENXIAO_PYTHON)"
}

# Run a command as the postgres OS user (initdb/postgres refuse to run as root), from /,
# because that user may not be allowed into the caller's working directory.
as_pg() {
  if is_root; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# As root, make the system location for this checkout's data, owned by postgres; never
# touch the permissions of the user's own folders. Fail with the cause and the fix when
# the postgres user still cannot reach the data directory.
pg_ensure_reachable() {
  if ! is_root; then
    mkdir -p "$PG_DIR" || die "cannot create $PG_DIR; set FENXIAO_PG_DIR to a folder you can write"
    return 0
  fi
  if [[ "$PG_DIR" == "$PG_SYSTEM_ROOT/"* ]]; then
    local parent
    parent="$(dirname "$PG_SYSTEM_ROOT")"
    if [[ ! -d "$parent" ]]; then
      install -d -m 755 -o postgres -g postgres "$parent" || die "cannot create $parent"
    fi
    install -d -m 750 -o postgres -g postgres "$PG_SYSTEM_ROOT" "$PG_DIR" \
      || die "cannot create $PG_DIR (owned by postgres)"
    printf '%s\n' "$PG_DIR" >"$LOCAL/postgres.location"
  else
    mkdir -p "$PG_DIR"
    chown postgres:postgres "$PG_DIR"
  fi
  if ! (cd / && runuser -u postgres -- test -x "$PG_DIR" -a -w "$PG_DIR"); then
    die "the postgres OS user cannot reach $PG_DIR (a parent folder is private to its owner). Fix: unset FENXIAO_PG_DIR to use $PG_SYSTEM_ROOT/<checkout>, or point FENXIAO_PG_DIR at a folder whose parents postgres can traverse (e.g. under /var/lib/postgresql)"
  fi
}

# --------------------------------------------------------------------------- #
# Kafka
# --------------------------------------------------------------------------- #
pom_hash() { sha256sum "$INFRA/kafka/pom.xml" | cut -d' ' -f1; }
libs_ok() { [[ -f "$KAFKA_LIBS/.stamp" && "$(cat "$KAFKA_LIBS/.stamp")" == "$(pom_hash)" ]]; }

kafka_fetch_libs() {
  if libs_ok; then return 0; fi
  command -v mvn >/dev/null 2>&1 || apt_install maven
  local t0 tmp="$KAFKA_DIR/libs.tmp"
  t0="$(now)"
  say "downloading Kafka jars from Maven Central (infra/kafka/pom.xml) ..."
  rm -rf "$tmp"
  mkdir -p "$tmp" "$LOCAL/m2"
  if ! mvn -B -q -f "$INFRA/kafka/pom.xml" \
        -Dmaven.repo.local="$LOCAL/m2" \
        dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" \
        >"$KAFKA_DIR/mvn.log" 2>&1 9>&-; then
    tail_log "$KAFKA_DIR/mvn.log"
    die "mvn dependency:copy-dependencies failed"
  fi
  pom_hash >"$tmp/.stamp"
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
  say "Kafka jars ready: $(ls "$KAFKA_LIBS"/*.jar | wc -l) jars in $(since "$t0")s"
}

kafka_java() { # kafka_java MAIN_CLASS ARGS...  (foreground, short-lived tools)
  java -Xmx256m -cp "$KAFKA_LIBS/*" \
    -Dlog4j2.configurationFile="$INFRA/kafka/log4j2.yaml" \
    "$@"
}

kafka_render_config() {
  mkdir -p "$KAFKA_DATA"
  local tmp="$KAFKA_PROPS.tmp"
  sed -e "s|@KAFKA_DATA_DIR@|$KAFKA_DATA|g" \
      -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
      -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" \
      "$INFRA/kafka/server.properties.in" >"$tmp"
  mv "$tmp" "$KAFKA_PROPS"
}

kafka_format() {
  if [[ -f "$KAFKA_DATA/meta.properties" ]]; then return 0; fi
  local t0 cid
  t0="$(now)"
  if [[ ! -s "$KAFKA_CLUSTER_ID_FILE" ]]; then
    kafka_java kafka.tools.StorageTool random-uuid >"$KAFKA_CLUSTER_ID_FILE.tmp" 9>&- \
      || die "StorageTool random-uuid failed"
    mv "$KAFKA_CLUSTER_ID_FILE.tmp" "$KAFKA_CLUSTER_ID_FILE"
  fi
  cid="$(tr -d '[:space:]' <"$KAFKA_CLUSTER_ID_FILE")"
  say "formatting Kafka storage (cluster id $cid) ..."
  if ! kafka_java kafka.tools.StorageTool format --standalone -t "$cid" -c "$KAFKA_PROPS" \
        >"$KAFKA_DIR/format.log" 2>&1 9>&-; then
    tail_log "$KAFKA_DIR/format.log"
    die "kafka storage format failed"
  fi
  say "Kafka storage formatted in $(since "$t0")s"
}

kafka_pid() { # prints the pid if our broker is running, else returns 1
  [[ -f "$KAFKA_PID" ]] || return 1
  local pid
  pid="$(tr -d '[:space:]' <"$KAFKA_PID")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # Guard against pid reuse: must be a kafka.Kafka JVM with our config.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $KAFKA_PROPS" || return 1
  printf '%s' "$pid"
}

KAFKA_T0=""
kafka_start() {
  local pid
  if pid="$(kafka_pid)"; then
    say "kafka already running (pid $pid)"
    return 0
  fi
  rm -f "$KAFKA_PID"
  local p
  for p in "$KAFKA_PORT" "$CONTROLLER_PORT"; do
    if port_open "$p"; then
      die "127.0.0.1:$p is already in use by another process (not our broker); stop it first"
    fi
  done
  [[ -f "$KAFKA_LOG" ]] && mv -f "$KAFKA_LOG" "$KAFKA_LOG.1"
  KAFKA_T0="$(now)"
  say "starting kafka 4.1.1 (KRaft broker+controller) on $KAFKA_BOOTSTRAP, controller 127.0.0.1:$CONTROLLER_PORT ..."
  # setsid: own session, so Ctrl-C / SIGHUP of the caller does not kill it.
  # shellcheck disable=SC2086
  setsid nohup java $KAFKA_HEAP_OPTS \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$INFRA/kafka/log4j2.yaml" \
    -Dkafka.logs.dir="$KAFKA_DIR" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_PROPS" \
    </dev/null >"$KAFKA_LOG" 2>&1 9>&- &
  echo $! >"$KAFKA_PID"
}

kafka_stop() {
  local pid
  if ! pid="$(kafka_pid)"; then
    rm -f "$KAFKA_PID"
    say "kafka not running"
    return 0
  fi
  local t0 i
  t0="$(now)"
  say "stopping kafka (pid $pid, SIGTERM) ..."
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < KAFKA_STOP_TIMEOUT * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    warn "kafka did not stop within ${KAFKA_STOP_TIMEOUT}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$KAFKA_PID"
  say "kafka stopped in $(since "$t0")s"
}

# --------------------------------------------------------------------------- #
# PostgreSQL
# --------------------------------------------------------------------------- #
pg_socket_dir() {
  # Unix socket paths are limited to ~107 bytes; fall back to /tmp if the repo
  # lives somewhere deep.
  local d="$PG_DIR/run"
  if (( ${#d} + 16 > 100 )); then
    d="/tmp/fenxiao-pg-$(printf '%s' "$REPO" | sha256sum | cut -c1-12)"
  fi
  printf '%s' "$d"
}

pg_prepare_dirs() {
  local sock
  sock="$(pg_socket_dir)"
  pg_ensure_reachable
  mkdir -p "$PG_DIR" "$sock"
  if is_root; then
    chown postgres:postgres "$PG_DIR" "$sock"
    [[ -e "$PG_LOG" ]] && chown postgres:postgres "$PG_LOG"
  fi
  if [[ "$PG_DIR" == "$LOCAL/"* ]] || ! is_root; then chmod 755 "$PG_DIR"; fi
  chmod 775 "$sock"
}

pg_initdb() {
  if [[ -f "$PG_DATA/PG_VERSION" ]]; then
    local have want
    have="$(cat "$PG_DATA/PG_VERSION")"
    want="$("$PG_BIN/postgres" --version | sed -E 's/.* ([0-9]+)(\.[0-9]+)*.*/\1/')"
    if [[ "$have" != "$want" ]]; then
      die "$PG_DATA was created by PostgreSQL $have but binaries are $want ($PG_BIN); run 'infra/local.sh reset'"
    fi
    return 0
  fi
  local t0 locale_opt=(--no-locale)
  t0="$(now)"
  if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then locale_opt=(--locale=C.UTF-8); fi
  if [[ ! -s "$PG_SUPERUSER_PWFILE" ]]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$PG_SUPERUSER_PWFILE")
  fi
  if is_root; then chown postgres:postgres "$PG_SUPERUSER_PWFILE"; fi
  chmod 600 "$PG_SUPERUSER_PWFILE"
  rm -rf "$PG_DATA"
  say "initdb ($PG_BIN) -> $PG_DATA ..."
  if ! as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --pwfile="$PG_SUPERUSER_PWFILE" \
        -A scram-sha-256 -E UTF8 "${locale_opt[@]}" >"$PG_DIR/initdb.log" 2>&1 9>&-; then
    tail_log "$PG_DIR/initdb.log"
    die "initdb failed"
  fi
  printf "\n# fenxiao local settings (rendered from infra/postgres/fenxiao.conf.in)\ninclude_if_exists = 'fenxiao.conf'\n" \
    | as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
  say "initdb done in $(since "$t0")s"
}

pg_render_config() {
  # Written by us (root can write into the postgres-owned data dir), then
  # handed to postgres. Re-rendered on every `up`.
  local conf="$PG_DATA/fenxiao.conf" tmp="$PG_DATA/fenxiao.conf.new"
  sed -e "s|@PG_PORT@|$PG_PORT|g" -e "s|@PG_SOCKET_DIR@|$(pg_socket_dir)|g" \
    "$INFRA/postgres/fenxiao.conf.in" >"$tmp"
  if cmp -s "$tmp" "$conf"; then
    rm -f "$tmp"
  else
    mv -f "$tmp" "$conf"
    PG_CONF_CHANGED=1
  fi
  if is_root; then chown postgres:postgres "$conf"; fi
  chmod 600 "$conf"
}

pg_running() { [[ -f "$PG_DATA/PG_VERSION" ]] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

pg_pid() { [[ -f "$PG_DATA/postmaster.pid" ]] && head -n 1 "$PG_DATA/postmaster.pid"; }

PG_T0=""
PG_CONF_CHANGED=0
pg_start() {
  if pg_running; then
    if ((PG_CONF_CHANGED)); then
      warn "infra/postgres/fenxiao.conf.in changed; restart (down+up) to apply all settings"
      as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" reload >/dev/null 2>&1 9>&- || true
    fi
    say "postgres already running (pid $(pg_pid))"
    return 0
  fi
  if port_open "$PG_PORT"; then
    die "127.0.0.1:$PG_PORT is already in use by another process (not our PostgreSQL); stop it first"
  fi
  PG_T0="$(now)"
  say "starting postgres $(cat "$PG_DATA/PG_VERSION") on $PG_HOST:$PG_PORT ..."
  if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 start >"$PG_DIR/pg_ctl.out" 2>&1 9>&-; then
    cat "$PG_DIR/pg_ctl.out" >&2 || true
    tail_log "$PG_LOG"
    die "pg_ctl start failed"
  fi
}

pg_psql_super() { # pg_psql_super SQL...
  PGPASSWORD="$(cat "$PG_SUPERUSER_PWFILE")" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
    -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -tA "$@"
}

pg_bootstrap() { # idempotent: role + database
  local has
  has="$(pg_psql_super -c "select 1 from pg_roles where rolname = '$PG_APP_USER'")" \
    || { tail_log "$PG_LOG"; die "cannot connect to postgres as superuser"; }
  if [[ "$has" != 1 ]]; then
    say "creating role $PG_APP_USER"
    pg_psql_super -c "create role $PG_APP_USER login createdb password '$PG_APP_PASSWORD'" >/dev/null
  fi
  has="$(pg_psql_super -c "select 1 from pg_database where datname = '$PG_APP_DB'")"
  if [[ "$has" != 1 ]]; then
    say "creating database $PG_APP_DB"
    pg_psql_super -c "create database $PG_APP_DB owner $PG_APP_USER" >/dev/null
  fi
}

pg_stop() {
  if ! find_pg_bin || [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
    say "postgres not initialised"
    return 0
  fi
  if ! pg_running; then
    say "postgres not running"
    return 0
  fi
  local t0
  t0="$(now)"
  say "stopping postgres (pid $(pg_pid), fast) ..."
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null 9>&- \
    || { tail_log "$PG_LOG"; die "pg_ctl stop failed"; }
  say "postgres stopped in $(since "$t0")s"
}

# --------------------------------------------------------------------------- #
# Readiness (infra/wait_ready.py, aiokafka + asyncpg)
# --------------------------------------------------------------------------- #
wait_postgres() {
  "$PYTHON" "$INFRA/wait_ready.py" --no-kafka --postgres "$DATABASE_URL_LOCAL" \
    --timeout "$READY_TIMEOUT" --postgres-log "$PG_LOG" "${READY_VERBOSE[@]}" 9>&- \
    || die "postgres did not become ready"
}

wait_kafka() {
  # Run the probe in the background and watch the JVM: if the broker dies
  # during start-up, fail immediately instead of after the full timeout.
  "$PYTHON" "$INFRA/wait_ready.py" --no-postgres --kafka "$KAFKA_BOOTSTRAP" \
    --timeout "$READY_TIMEOUT" --kafka-log "$KAFKA_LOG" "${READY_VERBOSE[@]}" 9>&- &
  local wpid=$! rc=0
  while kill -0 "$wpid" 2>/dev/null; do
    if ! kafka_pid >/dev/null; then
      kill "$wpid" 2>/dev/null || true
      wait "$wpid" 2>/dev/null || true
      tail_log "$KAFKA_LOG"
      die "kafka exited during start-up (see $KAFKA_LOG)"
    fi
    sleep 0.2
  done
  wait "$wpid" || rc=$?
  ((rc == 0)) || die "kafka did not become ready (see $KAFKA_LOG)"
}

# --------------------------------------------------------------------------- #
# Commands
# --------------------------------------------------------------------------- #
# A failed `up` stops what it started itself (never what was already running), so a second
# try does not meet a port "in use by another process".
UP_OK=0
cleanup_failed_up() {
  local rc=$?
  ((UP_OK)) && return 0
  if [[ -n "$KAFKA_T0" ]] && kafka_pid >/dev/null; then warn "up failed: stopping the kafka it started"; kafka_stop >&2 || true; fi
  if [[ -n "$PG_T0" ]] && pg_running; then warn "up failed: stopping the postgres it started"; pg_stop >&2 || true; fi
  return "$rc"
}

cmd_up() {
  local t_all t_k t_p kafka_s pg_s
  t_all="$(now)"
  trap cleanup_failed_up EXIT
  take_lock
  ensure_python
  ensure_java_mvn
  ensure_pg_bin
  mkdir -p "$KAFKA_DIR"

  # Kafka first: its JVM boots while PostgreSQL is being set up.
  kafka_fetch_libs
  kafka_render_config
  kafka_format
  kafka_start
  t_k="${KAFKA_T0:-$(now)}"

  pg_prepare_dirs
  pg_initdb
  pg_render_config
  pg_start
  t_p="${PG_T0:-$(now)}"
  pg_bootstrap
  wait_postgres
  pg_s="$(since "$t_p")"

  wait_kafka
  kafka_s="$(since "$t_k")"

  say "up: kafka ${kafka_s}s$([[ -n "$KAFKA_T0" ]] && echo ' (started)' || echo ' (was running)')," \
      "postgres ${pg_s}s$([[ -n "$PG_T0" ]] && echo ' (started)' || echo ' (was running)')," \
      "total $(since "$t_all")s"
  say "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP"
  say "DATABASE_URL=$DATABASE_URL_LOCAL"
  say "postgres data: $PG_DATA"
  UP_OK=1
}

cmd_down() {
  take_lock
  kafka_stop
  pg_stop
}

cmd_status() {
  local ok=0 pid
  if pid="$(kafka_pid)"; then
    if port_open "$KAFKA_PORT"; then
      say "kafka:    running  pid $pid, $KAFKA_BOOTSTRAP answering"
    else
      say "kafka:    starting pid $pid, $KAFKA_BOOTSTRAP NOT answering"; ok=3
    fi
  else
    if port_open "$KAFKA_PORT"; then
      say "kafka:    stopped (but something else answers on $KAFKA_BOOTSTRAP)"
    else
      say "kafka:    stopped"
    fi
    ok=3
  fi
  if find_pg_bin && pg_running; then
    if port_open "$PG_PORT"; then
      say "postgres: running  pid $(pg_pid), $PG_HOST:$PG_PORT answering"
    else
      say "postgres: running  pid $(pg_pid), $PG_HOST:$PG_PORT NOT answering"; ok=3
    fi
  else
    say "postgres: stopped"
    ok=3
  fi
  say "postgres data: $PG_DATA"
  return "$ok"
}

cmd_env() {
  printf 'export KAFKA_BOOTSTRAP_SERVERS=%s\n' "$KAFKA_BOOTSTRAP"
  printf 'export DATABASE_URL=%s\n' "$DATABASE_URL_LOCAL"
}

cmd_reset() {
  cmd_down
  say "deleting $KAFKA_DATA and $PG_DATA (jars kept)"
  rm -rf "$KAFKA_DATA" "$PG_DATA" "$KAFKA_DIR/server.properties"
  if [[ "$PG_DIR" == "$PG_SYSTEM_ROOT/"* ]]; then rm -rf "$PG_DIR"; rm -f "$LOCAL/postgres.location"; fi
}

usage() {
  sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
  local cmd="${1:-}"
  case "$cmd" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    reset) cmd_reset ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
