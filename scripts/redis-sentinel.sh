#!/usr/bin/env bash
# Runs a command beside a private Sentinel topology, then stops it whatever
# the command's outcome: a master, a replica and three sentinels (quorum 2)
# on free ports of 127.0.0.1, keeping nothing on disk. Sentinels take a
# master for down after 1 s, so a failover completes in a few seconds.
# Exported to the command:
#   CACHE_GATEWAY_TEST_REDIS_SENTINELS        127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3
#   CACHE_GATEWAY_TEST_REDIS_SENTINEL_MASTER  the master's name (cache-gateway-test)
#   CACHE_GATEWAY_TEST_REDIS_SENTINEL_DIR     where each data node's configuration is,
#                                             as node-PORT.conf: `redis-server node-PORT.conf`
#                                             restarts a killed node (it daemonizes and writes
#                                             node-PORT.pid, which the cleanup reads)
#   scripts/redis-sentinel.sh swift test
set -euo pipefail

command=("$@")
dir=$(mktemp -d "${TMPDIR:-/tmp}/cache-gateway-redis-sentinel.XXXXXX")
name=cache-gateway-test

cleanup() {
    for pidfile in "$dir"/*.pid; do
        [ -e "$pidfile" ] || continue
        pid=$(cat "$pidfile" 2>/dev/null || true)
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    # A node that a test restarted is the test's child and may have inherited
    # its blocked SIGTERM: every redis-server working in this topology's
    # directory is killed outright (it keeps nothing on disk anyway).
    for pid in $(pgrep -x redis-server || true); do
        [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$dir" ] && kill -KILL "$pid" 2>/dev/null || true
    done
    # Daemonized servers are not our children: wait for their pid files to go.
    for _ in $(seq 1 100); do
        alive=0
        for pidfile in "$dir"/*.pid; do
            [ -e "$pidfile" ] || continue
            pid=$(cat "$pidfile" 2>/dev/null || true)
            [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && alive=1
        done
        [ $alive = 0 ] && break
        sleep 0.05
    done
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

master_port=$(free_port)
replica_port=$(free_port)
node() {
    local port=$1 extra=$2
    cat > "$dir/node-$port.conf" <<CONF
port $port
bind 127.0.0.1
save ""
appendonly no
dir $dir
dbfilename dump-$port.rdb
logfile $dir/node-$port.log
pidfile $dir/node-$port.pid
daemonize yes
$extra
CONF
    redis-server "$dir/node-$port.conf"
}
node "$master_port" ""
node "$replica_port" "replicaof 127.0.0.1 $master_port"

sentinels=()
for _ in 1 2 3; do
    port=$(free_port)
    cat > "$dir/sentinel-$port.conf" <<CONF
port $port
bind 127.0.0.1
dir $dir
logfile $dir/sentinel-$port.log
pidfile $dir/sentinel-$port.pid
daemonize yes
sentinel monitor $name 127.0.0.1 $master_port 2
sentinel down-after-milliseconds $name 1000
sentinel failover-timeout $name 3000
sentinel parallel-syncs $name 1
CONF
    redis-server "$dir/sentinel-$port.conf" --sentinel
    sentinels+=("$port")
done

# Ready when the replica is in sync and every sentinel knows the replica and
# the two other sentinels (a failover needs a majority of them to agree).
ready() {
    redis-cli -p "$replica_port" info replication 2>/dev/null | grep -q '^master_link_status:up' || return 1
    for port in "${sentinels[@]}"; do
        [ "$(redis-cli -p "$port" sentinel replicas "$name" 2>/dev/null | grep -c '^ip$')" -ge 1 ] || return 1
        [ "$(redis-cli -p "$port" sentinel sentinels "$name" 2>/dev/null | grep -c '^ip$')" -ge 2 ] || return 1
    done
}
for _ in $(seq 1 400); do
    ready && break
    sleep 0.05
done
ready || { echo "redis-sentinel: the topology did not come up:" >&2; tail -n 20 "$dir"/*.log >&2; exit 1; }

export CACHE_GATEWAY_TEST_REDIS_SENTINELS="127.0.0.1:${sentinels[0]},127.0.0.1:${sentinels[1]},127.0.0.1:${sentinels[2]}"
export CACHE_GATEWAY_TEST_REDIS_SENTINEL_MASTER="$name"
export CACHE_GATEWAY_TEST_REDIS_SENTINEL_DIR="$dir"
set +e
"${command[@]}"
status=$?
set -e
exit $status
