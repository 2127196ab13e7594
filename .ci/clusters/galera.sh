#!/usr/bin/env bash
# A private 3-node MariaDB Galera cluster on loopback, for the cluster tests.
#
#   galera.sh start   start it (idempotent), print the env line on stdout
#   galera.sh urls    print GOVERNANCE_GALERA_URLS=… for a running cluster
#   galera.sh stop    stop the nodes this script started (by PID), remove its data
#
# Each node has its own data directory under $GOVERNANCE_GALERA_DIR
# (default /tmp/gov-galera), its own client port (23061-23063) and Galera
# ports (group 24671-3, IST 24681-3, SST 24441-3), all below the kernel's
# ephemeral range (32768-60999), so no outgoing connection can hold one
# while a node binds it. The system server on 3306
# and its data directory are never touched: every option comes from this
# script's own config files (--defaults-file), nothing from /etc/mysql.
# Root has an empty password over TCP, so mysql://root@127.0.0.1:23061/test works.
set -euo pipefail

DIR=${GOVERNANCE_GALERA_DIR:-/tmp/gov-galera}
NODES=(1 2 3)
MARIADBD=${MARIADBD:-/usr/sbin/mariadbd}
PROVIDER=${GALERA_PROVIDER:-/usr/lib/galera/libgalera_smm.so}
client_port() { echo $((23060 + $1)); }
group_port() { echo $((24670 + $1)); }
ist_port() { echo $((24680 + $1)); }
sst_port() { echo $((24440 + $1)); }

say() { printf 'galera: %s\n' "$*" >&2; }

urls() {
  local list=()
  for n in "${NODES[@]}"; do list+=("mysql://root@127.0.0.1:$(client_port "$n")/test"); done
  (IFS=,; echo "GOVERNANCE_GALERA_URLS=${list[*]}")
}

# The server's own PID file, else the PID it was launched with (the same
# process: setsid execs it), so a node that has not written it yet is found.
pid_of() { cat "$DIR/node$1/mariadbd.pid" 2>/dev/null || cat "$DIR/node$1/launched.pid" 2>/dev/null || true; }
alive() { local pid; pid=$(pid_of "$1"); [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

sql() { # node, statement: over the node's own socket
  mariadb --no-defaults -S "$DIR/node$1/mysqld.sock" -u root -N -B -e "$2"
}

status_of() { # node, wsrep status variable
  sql "$1" "SHOW STATUS LIKE '$2'" 2>/dev/null | awk '{print $2}'
}

wait_synced() { # node, seconds
  local n=$1
  for _ in $(seq "$(( $2 * 2 ))"); do
    if ! kill -0 "$(cat "$DIR/node$n/launched.pid")" 2>/dev/null; then
      say "node $n exited; the end of its log:"
      tail -n 30 "$DIR/node$n/error.log" >&2 || true
      return 1
    fi
    if [ "$(status_of "$n" wsrep_local_state_comment)" = Synced ] && [ "$(status_of "$n" wsrep_ready)" = ON ]; then
      return 0
    fi
    sleep 0.5
  done
  say "node $n is not synced after $2 s; the end of its log:"
  tail -n 30 "$DIR/node$n/error.log" >&2 || true
  return 1
}

require_tools() {
  [ -x "$MARIADBD" ] || { say "$MARIADBD is missing (apt-get install mariadb-server)"; exit 1; }
  [ -f "$PROVIDER" ] || { say "$PROVIDER is missing (apt-get install galera-4)"; exit 1; }
  # The state transfer to a joining node is rsync's (wsrep_sst_rsync); it
  # also needs ss or lsof to see its daemon listen. A fresh Debian 12 has
  # neither rsync nor always iproute2.
  local missing=()
  command -v rsync >/dev/null || missing+=(rsync)
  command -v ss >/dev/null || command -v lsof >/dev/null || missing+=(iproute2)
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]} (the rsync state transfer needs it)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; }
  fi
}

write_config() { # node
  local n=$1 d="$DIR/node$1" members=()
  for m in "${NODES[@]}"; do members+=("127.0.0.1:$(group_port "$m")"); done
  cat >"$d/my.cnf" <<EOF
[mysqld]
user=mysql
datadir=$d/data
socket=$d/mysqld.sock
pid-file=$d/mariadbd.pid
log-error=$d/error.log
port=$(client_port "$n")
bind-address=127.0.0.1
skip-name-resolve
skip-log-bin
binlog_format=ROW
default_storage_engine=InnoDB
innodb_autoinc_lock_mode=2
innodb_buffer_pool_size=64M
innodb_log_file_size=32M
innodb_flush_log_at_trx_commit=2
max_connections=400
wsrep_on=ON
wsrep_provider=$PROVIDER
wsrep_cluster_name=governance_test
wsrep_cluster_address=gcomm://$(IFS=,; echo "${members[*]}")
wsrep_node_name=node$n
wsrep_node_address=127.0.0.1:$(group_port "$n")
wsrep_provider_options="gmcast.listen_addr=tcp://127.0.0.1:$(group_port "$n");ist.recv_addr=127.0.0.1:$(ist_port "$n");gcache.size=64M"
wsrep_sst_method=rsync
wsrep_sst_receive_address=127.0.0.1:$(sst_port "$n")
wsrep_slave_threads=2
# One free list per table: the cluster tests open the instances a race
# needs before it starts (a Galera abort while MariaDB parses the triggers
# of a new instance breaks that instance; see docs/operations.md).
table_open_cache_instances=1
EOF
}

start_node() { # node, extra options…
  local n=$1; shift
  local d="$DIR/node$n"
  # Detached from this shell's job control and output, so the caller's
  # pipes close; the PID file is how stop finds it.
  setsid "$MARIADBD" --defaults-file="$d/my.cnf" "$@" </dev/null >>"$d/stdout.log" 2>&1 &
  echo $! >"$d/launched.pid"
}

start() {
  local running=0
  for n in "${NODES[@]}"; do alive "$n" && running=$((running + 1)); done
  if [ "$running" -eq "${#NODES[@]}" ]; then
    say "already running under $DIR"
    urls
    return 0
  fi
  [ "$running" -eq 0 ] || { say "some nodes of $DIR are running, some not: run stop first"; exit 1; }
  for n in "${NODES[@]}"; do
    for port in "$(client_port "$n")" "$(group_port "$n")" "$(ist_port "$n")" "$(sst_port "$n")"; do
      if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        say "port $port is in use by something else: not starting"
        exit 1
      fi
    done
  done
  require_tools
  rm -rf "$DIR"
  for n in "${NODES[@]}"; do
    mkdir -p "$DIR/node$n/data"
    write_config "$n"
  done
  chown -R mysql:mysql "$DIR"
  # Only the first node gets a fresh system database; the others receive
  # the first one's by state transfer when they join.
  mariadb-install-db --defaults-file="$DIR/node1/my.cnf" --auth-root-authentication-method=normal \
    --skip-test-db >"$DIR/node1/install.log" 2>&1 \
    || { say "mariadb-install-db failed:"; cat "$DIR/node1/install.log" >&2; exit 1; }
  start_node 1 --wsrep-new-cluster
  wait_synced 1 60
  # Empty password for root over TCP (127.0.0.1 is not 'localhost' with
  # skip-name-resolve), and the database the URLs name; replicated to the
  # nodes that join.
  sql 1 "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
         GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
         CREATE DATABASE IF NOT EXISTS test"
  for n in "${NODES[@]:1}"; do
    start_node "$n"
    wait_synced "$n" 90
  done
  local size
  size=$(status_of 1 wsrep_cluster_size)
  [ "$size" = "${#NODES[@]}" ] || { say "cluster size is $size, expected ${#NODES[@]}"; exit 1; }
  say "3 nodes synced under $DIR (ports $(client_port 1)-$(client_port 3))"
  urls
}

stop() {
  [ -d "$DIR" ] || return 0
  # The last node down would be the one to bootstrap from; nothing here
  # restarts the cluster, so the order only keeps shutdowns short.
  for n in $(printf '%s\n' "${NODES[@]}" | sort -r); do
    local pid
    pid=$(pid_of "$n")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      if kill -0 "$pid" 2>/dev/null; then
        say "node $n (pid $pid) did not stop within 30 s: killing it"
        kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
  done
  # An SST helper (rsync daemon) a node left behind holds its port: only the
  # ones whose config file is ours.
  if [ -d "$DIR" ]; then
    for pidfile in "$DIR"/node*/data/rsync_sst.pid; do
      [ -f "$pidfile" ] && kill -TERM "$(cat "$pidfile")" 2>/dev/null || true
    done
  fi
  rm -rf "$DIR"
  say "stopped; $DIR removed"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  urls) urls ;;
  *) echo "usage: $0 start|stop|urls" >&2; exit 2 ;;
esac
