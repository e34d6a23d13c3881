#!/usr/bin/env bash
# Change propagation to stream clients: the release server (core 0) and
# N clients in one benchmark process (core 1), gRPC and SSE, 1,000 and
# 10,000 clients. Prints latency from the admin API's 2xx to receipt by
# every client (p50/p99/max) and the server's RSS growth per idle client.
#
#   benches/load/propagation.sh [rounds=20] [client counts="1000 10000"]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-20}
counts=${2:-"1000 10000"}
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --locked -q -p rampart-server
cargo build --release --locked -q -p rampart-benches --bin propagation
token=propagation-bench-token-0001
base=18900
for protocol in ${PROTOCOLS:-grpc sse}; do
  for clients in $counts; do
    data=$(mktemp -d)
    RAMPART_ADMIN_TOKEN=$token taskset -c 0 ./target/release/rampart serve --flags examples/flags.yaml --data-dir "$data" \
      --http-addr 127.0.0.1:$base --admin-addr 127.0.0.1:$((base + 1)) --grpc-addr 127.0.0.1:$((base + 2)) \
      --sync-addr 127.0.0.1:$((base + 3)) --log warn &
    server=$!
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$((base + 1))/healthz" >/dev/null && break; sleep 0.1; done
    taskset -c 1 ./target/release/propagation --sync 127.0.0.1:$((base + 3)) --http http://127.0.0.1:$base \
      --admin http://127.0.0.1:$((base + 1)) --token $token --clients "$clients" --protocol $protocol \
      --rounds "$rounds" --server-pid $server || echo "FAILED protocol=$protocol clients=$clients"
    kill $server; wait $server 2>/dev/null || true
    rm -rf "$data"
    base=$((base + 10))
  done
done
