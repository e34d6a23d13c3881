#!/usr/bin/env bash
# Cross-replica propagation and evaluation throughput with the Redis store.
#
# 1. Three release replicas on one redis-server (core 0); N stream clients
#    per replica on B and C (core 1); changes made through A's admin API.
#    Prints the latency from A's 2xx to receipt by every client of B and C.
# 2. OFREP throughput of one replica on the Redis store, for comparison
#    with benches/load/ofrep.sh on the embedded store (evaluation never
#    touches Redis, so they should match).
#
#   benches/load/replicas.sh [rounds=20] [clients per replica=1000] [protocols="sse grpc"]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-20}
per_replica=${2:-1000}
protocols=${3:-"sse grpc"}
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --locked -q -p rampart-server
cargo build --release --locked -q -p rampart-benches --bin propagation
token=replicas-bench-token-00001
redis_port=18990
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
taskset -c 0 redis-server --port $redis_port --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec \
  --dir "$work" >/dev/null &
pids+=($!)
for _ in $(seq 100); do redis-cli -p $redis_port ping >/dev/null 2>&1 && break; sleep 0.1; done

prefix="bench$$"
for protocol in $protocols; do
  for base in 19000 19010 19020; do
    RAMPART_ADMIN_TOKEN=$token taskset -c 0 ./target/release/rampart serve --flags examples/flags.yaml \
      --redis-url "redis://127.0.0.1:$redis_port/0" --redis-prefix "$prefix-$protocol" --http-addr 127.0.0.1:$base \
      --admin-addr 127.0.0.1:$((base + 1)) --grpc-addr 127.0.0.1:$((base + 2)) --sync-addr 127.0.0.1:$((base + 3)) --log warn &
    pids+=($!)
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$((base + 1))/healthz" >/dev/null && break; sleep 0.1; done
  done
  echo "three replicas on redis; $per_replica $protocol clients on each of B and C; changes through A"
  taskset -c 1 ./target/release/propagation --sync 127.0.0.1:19013,127.0.0.1:19023 \
    --http http://127.0.0.1:19010,http://127.0.0.1:19020 --admin http://127.0.0.1:19001 --token $token \
    --clients $((2 * per_replica)) --protocol "$protocol" --rounds "$rounds" || echo "FAILED protocol=$protocol"
  for pid in "${pids[@]:1}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  pids=("${pids[0]}")
done

echo "OFREP on one replica with the redis store:"
RAMPART_BENCH_REDIS_URL="redis://127.0.0.1:$redis_port/0" benches/load/ofrep.sh 64 10 1
