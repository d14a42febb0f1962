#!/usr/bin/env bash
# Starts or stops a private Redis Cluster of 3 masters with one replica each,
# on 127.0.0.1 and six free TCP ports (their cluster bus ports are 10000
# higher), keeping nothing on disk but the nodes' cluster config files.
#   scripts/redis-cluster.sh start DIR   # prints the seeds: 127.0.0.1:P1,...,127.0.0.1:P6
#   scripts/redis-cluster.sh stop DIR
# DIR holds each node's files, its pid file and start-PORT.sh, which starts
# that node again with its configuration (a test that kills a master uses
# it to bring the node back, as a replica).
# scripts/with-redis.sh runs it once per test run.
set -euo pipefail

command="${1:?usage: redis-cluster.sh start|stop DIR}"
dir="${2:?usage: redis-cluster.sh start|stop DIR}"

stop() {
    for pidfile in "$dir"/node-*.pid; do
        [ -e "$pidfile" ] || continue
        pid=$(cat "$pidfile" 2>/dev/null || true)
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; fi
    done
    # Wait for them to exit (each pid polled), so that the ports are free afterwards.
    for pidfile in "$dir"/node-*.pid; do
        [ -e "$pidfile" ] || continue
        pid=$(cat "$pidfile" 2>/dev/null || true)
        for _ in $(seq 1 100); do
            { [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; } || break
            sleep 0.05
        done
        # One that did not stop within 5 s is killed.
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
    done
}

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

if [ "$command" = stop ]; then
    stop
    exit 0
fi
[ "$command" = start ] || { echo "redis-cluster: unknown command $command" >&2; exit 2; }
mkdir -p "$dir"
# REDIS_CLUSTER_NODE_TIMEOUT (ms, default 1000: the failover test's bound
# counts from it); the benchmarks raise it, so that a node slowed down by a
# loaded CPU is not taken for failed in the middle of a measurement.
node_timeout="${REDIS_CLUSTER_NODE_TIMEOUT:-1000}"

# A base port whose six ports and six bus ports are all free. Both stay below
# the kernel's ephemeral range (32768 and up by default), where an outgoing
# connection of anything else on the machine can take a port between this
# check and the node's bind: the nodes on 20000-22705, their buses on 30000-32705.
base=""
for _ in $(seq 1 50); do
    candidate=$((20000 + RANDOM % 2700))
    ok=1
    for i in 0 1 2 3 4 5; do
        if ! port_free $((candidate + i)) || ! port_free $((candidate + i + 10000)); then ok=0; break; fi
    done
    if [ "$ok" = 1 ]; then base=$candidate; break; fi
done
[ -n "$base" ] || { echo "redis-cluster: no free ports" >&2; exit 1; }

seeds=""
for i in 0 1 2 3 4 5; do
    port=$((base + i))
    cat > "$dir/start-$port.sh" <<NODE
#!/usr/bin/env bash
# The daemon keeps none of its starter's descriptors (a pipe held open would
# make a starter that waits for end-of-file wait for good).
for fd in /proc/\$\$/fd/*; do fd=\${fd##*/}; if [ "\$fd" -gt 2 ]; then eval "exec \$fd>&-" 2>/dev/null || true; fi; done
exec redis-server --port $port --bind 127.0.0.1 --cluster-enabled yes \\
    --cluster-config-file "$dir/nodes-$port.conf" --cluster-node-timeout $node_timeout \\
    --save '' --appendonly no --dir "$dir" --logfile "$dir/node-$port.log" \\
    --pidfile "$dir/node-$port.pid" --daemonize yes
NODE
    chmod +x "$dir/start-$port.sh"
    "$dir/start-$port.sh"
    seeds="$seeds${seeds:+,}127.0.0.1:$port"
done

# Every node answers before the cluster is made.
for i in 0 1 2 3 4 5; do
    port=$((base + i))
    for _ in $(seq 1 200); do
        [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break
        sleep 0.05
    done
    [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] || { echo "redis-cluster: node $port did not start" >&2; cat "$dir/node-$port.log" >&2; stop; exit 1; }
done

hosts=$(echo "$seeds" | tr ',' ' ')
# shellcheck disable=SC2086
redis-cli --cluster create $hosts --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 \
    || { echo "redis-cluster: cluster create failed" >&2; cat "$dir/create.log" >&2; stop; exit 1; }

# Ready when every node says cluster_state:ok and knows all six nodes.
for _ in $(seq 1 400); do
    ready=1
    for i in 0 1 2 3 4 5; do
        info=$(redis-cli -p $((base + i)) cluster info 2>/dev/null || true)
        if ! grep -q "cluster_state:ok" <<<"$info" || ! grep -q "cluster_known_nodes:6" <<<"$info"; then ready=0; break; fi
    done
    [ "$ready" = 1 ] && break
    sleep 0.05
done
[ "$ready" = 1 ] || { echo "redis-cluster: the cluster did not become ready" >&2; stop; exit 1; }
# And every replica is attached to its master (a replica not yet synced would
# be promoted with nothing, which a failover test would notice).
for _ in $(seq 1 400); do
    synced=$(for i in 0 1 2 3 4 5; do redis-cli -p $((base + i)) info replication 2>/dev/null | grep -c "master_link_status:up" || true; done | awk '{ n += $1 } END { print n }')
    [ "$synced" = 3 ] && break
    sleep 0.05
done
echo "$seeds"
