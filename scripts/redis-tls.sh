#!/usr/bin/env bash
# Runs a command beside three private TLS-only redis-servers, then stops them
# whatever the command's outcome. A fresh CA and certificates are made with
# openssl first, in a temporary directory exported as
# CACHE_GATEWAY_TEST_REDIS_TLS_DIR:
#   ca.crt                 the CA that signed the servers' and the client's certificates
#   client.crt, client.key a client certificate (mutual TLS)
#   other-ca.crt           an unrelated CA (trusting it instead must fail)
# The servers, on 127.0.0.1 only, with no plain port:
#   CACHE_GATEWAY_TEST_REDIS_TLS_PORT             certificate for localhost (no IP address); client certificates optional
#                                                 (its pid: CACHE_GATEWAY_TEST_REDIS_TLS_PID, for the benchmarks' pinning)
#   CACHE_GATEWAY_TEST_REDIS_TLS_MTLS_PORT        the same certificate; a client certificate is required
#   CACHE_GATEWAY_TEST_REDIS_TLS_WRONG_NAME_PORT  a certificate (from the same CA) for wrong-name.example only
#   scripts/redis-tls.sh swift test
set -euo pipefail

command=("$@")
dir=$(mktemp -d "${TMPDIR:-/tmp}/cache-gateway-redis-tls.XXXXXX")
pids=()

cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A CA, then certificates it signs: NAME with subjectAltName SAN.
certificate() {
    local name=$1 san=$2 usage=$3
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$dir/$name.key" -subj "/CN=$name" -out "$dir/$name.csr" 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=%s\n' "$san" "$usage" > "$dir/$name.ext"
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 2 -sha256 -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>/dev/null
}
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$dir/ca.key" -subj "/CN=cache-gateway test CA" -days 2 -out "$dir/ca.crt" 2>/dev/null
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$dir/other-ca.key" -subj "/CN=an unrelated CA" -days 2 -out "$dir/other-ca.crt" 2>/dev/null
certificate server "DNS:localhost" serverAuth
certificate wrong-name "DNS:wrong-name.example" serverAuth
certificate client "DNS:cache-gateway-client" clientAuth
chmod 600 "$dir"/*.key

# start NAME CERT AUTH_CLIENTS: one TLS-only server; prints its port.
start() {
    local name=$1 cert=$2 auth=$3 port
    port=$(free_port)
    redis-server --port 0 --bind 127.0.0.1 --tls-port "$port" \
        --tls-cert-file "$dir/$cert.crt" --tls-key-file "$dir/$cert.key" --tls-ca-cert-file "$dir/ca.crt" \
        --tls-auth-clients "$auth" --save "" --appendonly no --dir "$dir" --logfile "$dir/$name.log" --daemonize no \
        >/dev/null 2>&1 &
    pids+=($!)
    eval "${name}_port=$port"
}
start plain server optional
start mtls server yes
start wrong wrong-name no

# Wait for each to answer over TLS, not for a fixed time.
ping() {
    redis-cli --tls --cacert "$dir/ca.crt" --cert "$dir/client.crt" --key "$dir/client.key" --sni "$2" -h 127.0.0.1 -p "$1" ping 2>/dev/null || true
}
for check in "$plain_port localhost" "$mtls_port localhost" "$wrong_port wrong-name.example"; do
    set -- $check
    for _ in $(seq 1 200); do
        [ "$(ping "$1" "$2")" = "PONG" ] && break
        sleep 0.05
    done
    [ "$(ping "$1" "$2")" = "PONG" ] || { echo "redis-tls: the server on port $1 did not start:" >&2; cat "$dir"/*.log >&2; exit 1; }
done

export CACHE_GATEWAY_TEST_REDIS_TLS_DIR="$dir"
export CACHE_GATEWAY_TEST_REDIS_TLS_PORT="$plain_port"
export CACHE_GATEWAY_TEST_REDIS_TLS_PID="${pids[0]}"
export CACHE_GATEWAY_TEST_REDIS_TLS_MTLS_PORT="$mtls_port"
export CACHE_GATEWAY_TEST_REDIS_TLS_WRONG_NAME_PORT="$wrong_port"
set +e
"${command[@]}"
status=$?
set -e
exit $status
