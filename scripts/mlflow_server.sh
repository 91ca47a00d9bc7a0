#!/usr/bin/env bash
# A local MLflow tracking server on PostgreSQL: the shared-server setup of docs/team-server.md,
# on one machine, with nothing home-made in between (PostgreSQL 15 from Debian's `postgresql`
# package, `mlflow server` from the mlflow extra, psycopg from PyPI).
#
#   scripts/mlflow_server.sh start  [--data-dir DIR] [--port N] [--pg-port N] [--host H]
#                                   [--workers N] [--artifacts-destination URI] [--timeout S]
#   scripts/mlflow_server.sh stop   [--data-dir DIR]
#   scripts/mlflow_server.sh status [--data-dir DIR]
#
# Interface (stable; tests/team_server/ and the benchmark rely on it):
#   start   initdb (first time only), start PostgreSQL, create database `mlflow`, start
#           `mlflow server --backend-store-uri postgresql+psycopg://mlflow@127.0.0.1:PG_PORT/mlflow
#           --artifacts-destination DIR/artifacts --serve-artifacts`, wait until both answer, then
#           print the tracking URI (http://HOST:PORT) as the ONLY line on stdout. Progress goes to
#           stderr. Already running: prints the URI and exits 0 (idempotent; a dead mlflow server
#           is started again on its recorded port, PostgreSQL left as it is).
#   stop    the mlflow server (SIGTERM to its process group, SIGKILL after 15 s), then PostgreSQL
#           (`pg_ctl stop -m fast`). Nothing running: exits 0.
#   status  one line per service on stdout; exit 0 when both run, 3 otherwise.
#   Exit 2 with one `error: ...` line on stderr for a user error (port in use, PostgreSQL or
#   mlflow/psycopg missing, a data dir the postgres user cannot reach); 1 when a service fails to
#   come up (the end of its log is shown).
#
# Defaults: --data-dir $CODEX_ML_SERVER_DIR or ./mlflow-server, --port 5000, --pg-port 5433,
# --host 127.0.0.1, --workers 2, --timeout 120 (seconds to wait for each service).
# PG_BIN overrides the PostgreSQL binaries folder (default /usr/lib/postgresql/15/bin), MLFLOW
# the mlflow executable (default: .venv/bin/mlflow of this checkout, else `mlflow` on PATH).
#
# Data dir layout (documented, the tests read it):
#   DIR/postgres/data        the PostgreSQL cluster (PGDATA), owned by the postgres user when run as root
#   DIR/postgres/postgres.log
#   DIR/artifacts/           what the server's artifact proxy stores (unless --artifacts-destination)
#   DIR/mlflow.log           the mlflow server's output
#   DIR/mlflow.pid           pid of the mlflow server = its process group (kill -9 -- -PID stops it all)
#   DIR/server.env           PORT, PG_PORT, HOST, WORKERS, ARTIFACTS of the last start
#   DIR/pgpass               libpq password file (mode 0600): the password of database user `mlflow`
#                            lives only there and reaches the server via PGPASSFILE, never argv/stdout.
#
# PostgreSQL refuses to run as root: run as root, the cluster is created and run as the Debian
# `postgres` user, which must be able to reach DIR (every parent searchable, e.g. not under a
# 0700 home or pytest tmp dir). It listens on 127.0.0.1 only, with no Unix socket.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() { echo "error: $*" >&2; exit 2; }
fail() { echo "error: $*" >&2; exit 1; }
say() { echo "[mlflow_server] $*" >&2; }

usage() { sed -n '6,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; }

command_name=${1:-}
case "$command_name" in
  start|stop|status) shift ;;
  -h|--help|help) usage; exit 0 ;;
  "") usage; die "missing command: start, stop or status" ;;
  *) usage; die "unknown command '$command_name' (start, stop or status)" ;;
esac

data_dir=${CODEX_ML_SERVER_DIR:-./mlflow-server}
port="" pg_port="" host="" workers="" artifacts="" timeout=120
while [ $# -gt 0 ]; do
  option=$1
  case "$option" in
    --data-dir|--port|--pg-port|--host|--workers|--artifacts-destination|--timeout)
      [ $# -ge 2 ] || die "$option needs a value"
      value=$2; shift 2 ;;
    --*=*) value=${option#*=}; option=${option%%=*}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$option' (see $0 --help)" ;;
  esac
  case "$option" in
    --data-dir) data_dir=$value ;;
    --port) port=$value ;;
    --pg-port) pg_port=$value ;;
    --host) host=$value ;;
    --workers) workers=$value ;;
    --artifacts-destination) artifacts=$value ;;
    --timeout) timeout=$value ;;
    *) die "unknown option '$option' (see $0 --help)" ;;
  esac
done

for pair in "--port:$port" "--pg-port:$pg_port"; do
  value=${pair#*:}
  if [ -n "$value" ] && ! { [[ $value =~ ^[0-9]+$ ]] && [ "$value" -ge 1 ] && [ "$value" -le 65535 ]; }; then
    die "${pair%%:*} must be a port number (1-65535), got '$value'"
  fi
done
[[ $timeout =~ ^[0-9]+$ ]] || die "--timeout must be a whole number of seconds, got '$timeout'"
[ -z "$workers" ] || [[ $workers =~ ^[1-9][0-9]*$ ]] || die "--workers must be a positive number, got '$workers'"

# --- paths and saved state -----------------------------------------------------------------
if [ "$command_name" = start ]; then
  mkdir -p "$data_dir" || die "cannot create --data-dir $data_dir"
elif [ ! -d "$data_dir" ]; then
  [ "$command_name" = stop ] && { say "nothing to stop: $data_dir does not exist"; exit 0; }
  echo "postgres: not set up ($data_dir does not exist)"; echo "mlflow: not running"; exit 3
fi
data_dir=$(cd "$data_dir" && pwd -P)
pg_dir=$data_dir/postgres
pgdata=$pg_dir/data
pg_log=$pg_dir/postgres.log
pid_file=$data_dir/mlflow.pid
state_file=$data_dir/server.env
pgpass=$data_dir/pgpass

saved() {  # saved KEY: a value from server.env (empty when absent)
  [ -f "$state_file" ] && sed -n "s/^$1=//p" "$state_file" | tail -n 1 || true
}
port=${port:-$(saved PORT)}; port=${port:-5000}
pg_port=${pg_port:-$(saved PG_PORT)}; pg_port=${pg_port:-5433}
host=${host:-$(saved HOST)}; host=${host:-127.0.0.1}
workers=${workers:-$(saved WORKERS)}; workers=${workers:-2}
artifacts=${artifacts:-$(saved ARTIFACTS)}; artifacts=${artifacts:-$data_dir/artifacts}

# --- PostgreSQL ----------------------------------------------------------------------------
find_pg_bin() {
  if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return; fi
  if [ -x /usr/lib/postgresql/15/bin/postgres ]; then echo /usr/lib/postgresql/15/bin; return; fi
  # Another major version of the same Debian package works as well.
  local newest
  newest=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  echo "${newest:-/usr/lib/postgresql/15/bin}"
}
pg_bin=$(find_pg_bin)

need_pg_bin() {
  local tool
  for tool in postgres initdb pg_ctl psql; do
    [ -x "$pg_bin/$tool" ] || die "PostgreSQL binaries not found ($pg_bin/$tool): install the Debian/Ubuntu package" \
      "'postgresql' (sudo apt-get install postgresql, or sudo scripts/install_system_deps.sh), or set PG_BIN"
  done
}

if [ "$(id -u)" -eq 0 ]; then
  pg_user=postgres
  as_pg() { runuser -u postgres -- "$@"; }
else
  pg_user=$(id -un)
  as_pg() { "$@"; }
fi

pg_running() {  # the cluster exists and its postmaster answers pg_ctl status
  [ -f "$pgdata/PG_VERSION" ] && [ -x "$pg_bin/pg_ctl" ] && as_pg "$pg_bin/pg_ctl" status -D "$pgdata" >/dev/null 2>&1
}

pg_actual_port() {  # the port the running postmaster listens on (line 4 of postmaster.pid)
  sed -n 4p "$pgdata/postmaster.pid" 2>/dev/null || true
}

port_busy() {  # something accepts connections on 127.0.0.1:$1
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

prepare_pg_dir() {
  if [ "$(id -u)" -eq 0 ]; then
    id -u postgres >/dev/null 2>&1 || die "running as root and there is no 'postgres' user (PostgreSQL refuses" \
      "to run as root): install the Debian package 'postgresql', which creates it, or run as a non-root user"
    chmod o+x "$data_dir"  # the postgres user only needs to pass through it to postgres/
    if ! runuser -u postgres -- test -x "$data_dir"; then
      die "the postgres user cannot reach $data_dir (a parent directory is not searchable by others, e.g. mode 0700);" \
        "use a --data-dir under a world-searchable path such as /var/tmp/mlflow-server, or chmod o+x its parents"
    fi
    mkdir -p "$pg_dir"
    chown postgres: "$pg_dir"
  else
    mkdir -p "$pg_dir"
  fi
  chmod 0700 "$pg_dir"
}

init_cluster() {
  [ -f "$pgdata/PG_VERSION" ] && { [ -f "$pgpass" ] || die "$pgpass is missing, so the password of the existing" \
    "cluster in $pgdata is lost: stop, delete $data_dir and start again"; return; }
  say "initdb: a new PostgreSQL cluster in $pgdata (user mlflow)"
  local password pwfile
  password=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  pwfile=$pg_dir/.initdb-password
  (umask 077; printf '%s\n' "$password" >"$pwfile")
  [ "$(id -u)" -eq 0 ] && chown postgres: "$pwfile"
  (umask 077; printf '127.0.0.1:*:*:mlflow:%s\n' "$password" >"$pgpass")
  if ! as_pg "$pg_bin/initdb" -D "$pgdata" -U mlflow --pwfile="$pwfile" --auth-host=scram-sha-256 \
      --auth-local=peer -E UTF8 --locale=C >"$pg_dir/initdb.log" 2>&1; then
    rm -f "$pwfile"
    tail -n 20 "$pg_dir/initdb.log" >&2
    fail "initdb failed (log: $pg_dir/initdb.log)"
  fi
  rm -f "$pwfile"
  # TCP on loopback only, no Unix socket (its path would have to be short and writable);
  # room for many server workers and clients.
  cat >>"$pgdata/postgresql.conf" <<'EOF'

# codex_ml scripts/mlflow_server.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 200
EOF
}

start_pg() {
  if pg_running; then
    pg_port=$(pg_actual_port)
    say "PostgreSQL already running on 127.0.0.1:$pg_port"
    return
  fi
  port_busy "$pg_port" && die "--pg-port $pg_port is in use (another PostgreSQL?): choose another with --pg-port N"
  say "starting PostgreSQL on 127.0.0.1:$pg_port"
  if ! as_pg "$pg_bin/pg_ctl" start -D "$pgdata" -l "$pg_log" -w -t "$timeout" -o "-p $pg_port" >/dev/null; then
    tail -n 20 "$pg_log" >&2 || true
    fail "PostgreSQL did not start (log: $pg_log)"
  fi
}

psql_mlflow() {  # psql_mlflow SQL: run SQL in database postgres as user mlflow, over TCP
  PGPASSFILE=$pgpass "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U mlflow -d postgres -v ON_ERROR_STOP=1 -tAqc "$1"
}

create_database() {
  if [ "$(psql_mlflow "SELECT 1 FROM pg_database WHERE datname = 'mlflow'")" != 1 ]; then
    say "creating database mlflow"
    psql_mlflow "CREATE DATABASE mlflow" >/dev/null
  fi
}

stop_pg() {
  if pg_running; then
    say "stopping PostgreSQL (pg_ctl stop -m fast)"
    as_pg "$pg_bin/pg_ctl" stop -D "$pgdata" -m fast -w -t 60 >/dev/null
  else
    say "PostgreSQL: not running"
  fi
}

# --- the mlflow server ---------------------------------------------------------------------
find_mlflow() {
  if [ -n "${MLFLOW:-}" ]; then echo "$MLFLOW"; return; fi
  if [ -x "$REPO/.venv/bin/mlflow" ]; then echo "$REPO/.venv/bin/mlflow"; return; fi
  command -v mlflow || true
}

need_mlflow() {
  mlflow_bin=$(find_mlflow)
  [ -n "$mlflow_bin" ] && [ -x "$mlflow_bin" ] || die "the mlflow command was not found: run scripts/bootstrap.sh dev" \
    "(or pip install 'codex-ml[server]'), or set MLFLOW=/path/to/mlflow"
  local python_bin
  python_bin=$(dirname "$mlflow_bin")/python
  [ -e "$python_bin" ] || [ -L "$python_bin" ] || python_bin=python3  # no venv next to it: the system's
  "$python_bin" -c '' 2>/dev/null || die "cannot run $python_bin (the Python of $mlflow_bin) as user $(id -un):" \
    "install codex-ml where this user can run it, or set MLFLOW=/path/to/mlflow"
  "$python_bin" -c 'import psycopg' 2>/dev/null || die "psycopg is not installed next to $mlflow_bin (the" \
    "server's PostgreSQL driver): pip install -c constraints.txt 'psycopg[binary]' (or 'codex-ml[server]')"
}

group_alive() {  # some process of group $1 is alive (a zombie left by kill -9 does not count)
  ps -o stat= -g "$1" 2>/dev/null | grep -qv '^Z'
}

server_pid() {  # the recorded pid when its process group is alive
  local pid
  pid=$(cat "$pid_file" 2>/dev/null || true)
  [[ $pid =~ ^[0-9]+$ ]] && group_alive "$pid" && echo "$pid"
}

server_healthy() {  # asked where the server listens (loopback when it binds every address)
  local at=$host
  [ "$at" = 0.0.0.0 ] && at=127.0.0.1
  [ "$at" = "::" ] && at="[::1]"
  curl -fsS --max-time 3 "http://$at:$port/health" >/dev/null 2>&1
}

tracking_uri() {
  local shown=$host
  [ "$shown" = 0.0.0.0 ] && shown=$(hostname -f 2>/dev/null || hostname)
  echo "http://$shown:$port"
}

wait_for_server() {
  local pid=$1 deadline=$((SECONDS + timeout))
  until server_healthy; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$data_dir/mlflow.log" >&2 || true
      rm -f "$pid_file"
      fail "the mlflow server exited while starting (log: $data_dir/mlflow.log)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 30 "$data_dir/mlflow.log" >&2 || true
      stop_server
      fail "the mlflow server did not answer /health within ${timeout}s (log: $data_dir/mlflow.log)"
    fi
    sleep 0.5
  done
}

start_server() {
  local pid
  if pid=$(server_pid); then
    if kill -0 "$pid" 2>/dev/null && ! grep -q '^Z' <<<"$(ps -o stat= -p "$pid")"; then
      server_healthy || wait_for_server "$pid"  # still starting
      say "mlflow server already running (pid $pid)"
      return
    fi
    say "the mlflow server (pid $pid) died; ending what is left of its process group"
    stop_server
  fi
  port_busy "$port" && die "--port $port is in use: choose another with --port N"
  mkdir -p "$data_dir/artifacts"
  say "starting mlflow server on $host:$port (backend postgresql 127.0.0.1:$pg_port, artifacts $artifacts)"
  # setsid: its own process group (stop signals the uvicorn workers too) that outlives this script.
  # The password reaches libpq through PGPASSFILE, never the command line (ps shows that).
  # MLflow's job runner (GenAI scorers, trace archival: a dozen huey processes) is off unless asked for.
  # SQLAlchemy's default pool (5 + 10 overflow per worker) is too small for uvicorn's ~40 requests at
  # once: 16 runs logging together got "QueuePool limit ... reached" (a 400 the client does not retry).
  # 20 + 20 per worker stays under max_connections (200) up to 4 workers; the environment overrides both.
  MLFLOW_SQLALCHEMYSTORE_POOL_SIZE=${MLFLOW_SQLALCHEMYSTORE_POOL_SIZE:-20} \
  MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW=${MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW:-20} \
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false} PGPASSFILE=$pgpass setsid "$mlflow_bin" server \
    --backend-store-uri "postgresql+psycopg://mlflow@127.0.0.1:$pg_port/mlflow" \
    --artifacts-destination "$artifacts" --serve-artifacts \
    --host "$host" --port "$port" --workers "$workers" \
    >>"$data_dir/mlflow.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$pid_file"
  wait_for_server "$pid"
}

stop_server() {
  local pid
  if ! pid=$(server_pid); then
    rm -f "$pid_file"
    say "mlflow server: not running"
    return
  fi
  say "stopping the mlflow server (pid $pid)"
  kill -TERM -- "-$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 15))
  while group_alive "$pid"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "still running after 15 s: SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "$pid_file"
}

write_state() {
  cat >"$state_file" <<EOF
PORT=$port
PG_PORT=$pg_port
HOST=$host
WORKERS=$workers
ARTIFACTS=$artifacts
EOF
}

# --- commands ------------------------------------------------------------------------------
case "$command_name" in
  start)
    need_pg_bin
    need_mlflow
    command -v curl >/dev/null 2>&1 || die "curl not found (used to wait for the server): apt-get install curl"
    # Ports first, before anything is created or started.
    if ! server_pid >/dev/null && port_busy "$port"; then
      die "--port $port is in use: choose another with --port N"
    fi
    if ! pg_running && port_busy "$pg_port"; then
      die "--pg-port $pg_port is in use (another PostgreSQL?): choose another with --pg-port N"
    fi
    prepare_pg_dir
    init_cluster
    start_pg
    create_database
    write_state
    start_server
    tracking_uri
    ;;
  stop)
    stop_server
    stop_pg
    ;;
  status)
    code=0
    if pg_running; then
      echo "postgres: running on 127.0.0.1:$(pg_actual_port) (data $pgdata, user $pg_user)"
    else
      echo "postgres: not running (data $pgdata)"; code=3
    fi
    if pid=$(server_pid) && server_healthy; then
      echo "mlflow: running at $(tracking_uri) (pid $pid, artifacts $artifacts)"
    elif pid=$(server_pid); then
      echo "mlflow: process $pid alive but /health does not answer on port $port"; code=3
    else
      echo "mlflow: not running"; code=3
    fi
    exit "$code"
    ;;
esac
