#!/usr/bin/env bash
# A private PostgreSQL 15 primary with a synchronous hot standby on loopback,
# for the failover tests.
#
#   postgres-failover.sh start          start both (idempotent), print the env lines on stdout
#   postgres-failover.sh urls           print them for a running pair
#   postgres-failover.sh kill-primary   kill -9 the primary's postmaster and its backends
#   postgres-failover.sh promote        promote the standby (pg_ctl promote), wait until it takes writes
#   postgres-failover.sh stop           stop what this script started (by PID), remove its data
#
# Both run as the postgres OS user from $GOVERNANCE_PG_FAILOVER_DIR (default
# /tmp/gov-pg-failover), on ports 25431 (primary) and 25432 (standby), below
# the kernel's ephemeral range so that no outgoing connection can hold one
# while a server binds it, with trust authentication on 127.0.0.1 only. The
# system cluster on 5432 and its data are never touched.
set -euo pipefail

DIR=${GOVERNANCE_PG_FAILOVER_DIR:-/tmp/gov-pg-failover}
BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PRIMARY_PORT=25431
STANDBY_PORT=25432

say() { printf 'postgres-failover: %s\n' "$*" >&2; }
as_pg() { if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi; }
psql_at() { # port, sql
  as_pg "$BIN/psql" -h 127.0.0.1 -p "$1" -U postgres -d postgres -XAtqc "$2"
}

urls() {
  echo "GOVERNANCE_PG_FAILOVER=postgres://postgres@127.0.0.1:$PRIMARY_PORT/test,postgres://postgres@127.0.0.1:$STANDBY_PORT/test"
  echo "GOVERNANCE_PG_FAILOVER_SCRIPT=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
}

postmaster_pid() { head -n 1 "$DIR/$1/postmaster.pid" 2>/dev/null || true; }
running() { local pid; pid=$(postmaster_pid "$1"); [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

wait_until() { # what, seconds, command…
  local what=$1 seconds=$2; shift 2
  for _ in $(seq "$(( seconds * 4 ))"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  say "$what: not within ${seconds}s"
  return 1
}

gone() { ! kill -0 "$1" 2>/dev/null; }
out_of_recovery() { [ "$(psql_at "$STANDBY_PORT" 'SELECT pg_is_in_recovery()')" = f ]; }

synchronous() {
  [ "$(psql_at "$PRIMARY_PORT" "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby1'")" = sync ]
}

start() {
  if running primary && running standby; then
    say "already running under $DIR"
    urls
    return 0
  fi
  if running primary || running standby; then
    say "half of $DIR is running: run stop first"
    exit 1
  fi
  for port in "$PRIMARY_PORT" "$STANDBY_PORT"; do
    if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      say "port $port is in use by something else: not starting"
      exit 1
    fi
  done
  [ -x "$BIN/postgres" ] || { say "$BIN/postgres is missing (apt-get install postgresql-15)"; exit 1; }
  rm -rf "$DIR"
  mkdir -p "$DIR"
  chown postgres: "$DIR"
  chmod 700 "$DIR"
  as_pg "$BIN/initdb" -D "$DIR/primary" -U postgres --auth=trust --no-sync >"$DIR/initdb.log" 2>&1 \
    || { cat "$DIR/initdb.log" >&2; exit 1; }
  # A commit returns once the standby has flushed its WAL
  # (synchronous_commit = on with a named synchronous standby): that is
  # what makes an acknowledged write survive the primary's death.
  as_pg tee -a "$DIR/primary/postgresql.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $PRIMARY_PORT
unix_socket_directories = '$DIR'
wal_level = replica
max_wal_senders = 4
hot_standby = on
synchronous_commit = on
synchronous_standby_names = 'FIRST 1 (standby1)'
max_connections = 100
shared_buffers = 32MB
fsync = on
EOF
  as_pg tee "$DIR/primary/pg_hba.conf" >/dev/null <<EOF
local all all trust
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
EOF
  as_pg "$BIN/pg_ctl" -D "$DIR/primary" -l "$DIR/primary.log" -w -t 60 start >/dev/null \
    || { tail -n 20 "$DIR/primary.log" >&2; exit 1; }
  as_pg "$BIN/pg_basebackup" -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -D "$DIR/standby" -X stream \
    -c fast -R -d "application_name=standby1" >/dev/null
  # Once promoted, the standby is a primary without a standby: were it to
  # keep the primary's synchronous_standby_names, every commit on it would
  # wait for ever for a standby that is not there. (A standby ignores the
  # setting while it is one.)
  as_pg tee -a "$DIR/standby/postgresql.auto.conf" >/dev/null <<EOF
port = $STANDBY_PORT
synchronous_standby_names = ''
EOF
  as_pg "$BIN/pg_ctl" -D "$DIR/standby" -l "$DIR/standby.log" -w -t 60 start >/dev/null \
    || { tail -n 20 "$DIR/standby.log" >&2; exit 1; }
  wait_until "the standby streaming synchronously" 30 synchronous
  psql_at "$PRIMARY_PORT" "CREATE DATABASE test" >/dev/null
  say "primary on $PRIMARY_PORT, synchronous standby on $STANDBY_PORT, under $DIR"
  urls
}

kill_primary() {
  local pid
  pid=$(postmaster_pid primary)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || { say "the primary is not running"; exit 1; }
  # The whole server dies at once, as in a crash: the postmaster and every
  # process it started, by PID.
  local children
  children=$(ps -o pid= --ppid "$pid" || true)
  kill -KILL "$pid" $children 2>/dev/null || true
  wait_until "the primary gone" 10 gone "$pid"
  say "killed the primary (postmaster $pid and its $(echo $children | wc -w) processes)"
}

promote() {
  as_pg "$BIN/pg_ctl" -D "$DIR/standby" -w -t 60 promote >/dev/null
  wait_until "the promoted standby taking writes" 30 out_of_recovery
  say "promoted the standby on $STANDBY_PORT"
}

stop() {
  [ -d "$DIR" ] || return 0
  for node in standby primary; do
    if running "$node"; then
      as_pg "$BIN/pg_ctl" -D "$DIR/$node" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
      local pid
      pid=$(postmaster_pid "$node")
      if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
  done
  rm -rf "$DIR"
  say "stopped; $DIR removed"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  urls) urls ;;
  kill-primary) kill_primary ;;
  promote) promote ;;
  *) echo "usage: $0 start|stop|urls|kill-primary|promote" >&2; exit 2 ;;
esac
