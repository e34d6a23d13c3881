#!/usr/bin/env bash
# The floor of a gRPC fan-out: the propagation client (core 1) against
# `benches/examples/grpc_floor.rs` (core 0), which serves rampart.v1
# Subscribe straight on h2. Compare with `PROTOCOLS=grpc
# benches/load/propagation.sh ROUNDS CLIENTS direct`: the difference is
# what hyper's and tonic's layers cost per client change.
#
#   benches/load/grpc_floor.sh [rounds=5] [clients=19000]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-5}
clients=${2:-19000}
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --locked -q -p rampart-benches --example grpc_floor --bin propagation
taskset -c 0 ./target/release/examples/grpc_floor 18993 18991 &
server=$!
trap 'kill $server 2>/dev/null; wait 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fs http://127.0.0.1:18991/ >/dev/null 2>&1 && break; sleep 0.1; done
taskset -c 1 ./target/release/propagation --sync 127.0.0.1:18993 --http http://127.0.0.1:18990 \
  --admin http://127.0.0.1:18991 --token unused --clients "$clients" --protocol grpc --rounds "$rounds" \
  --server-pid "$server"
