#!/usr/bin/env bash
# Change propagation to stream clients: the release server (core 0) and
# N clients in one benchmark process (core 1), gRPC and SSE. Prints latency
# from the admin API's 2xx to receipt by every client (p50/p99/max), the
# serving process's RSS growth per idle client, and CPU time per client
# change on both sides.
#
# Paths: `direct` (clients on the server) and `relay` (clients on one relay
# of the server, the relay on core 0 beside its primary): the same change
# then crosses the relay's upstream stream first. Each process holds at
# most one descriptor per client, so the largest count is what one
# process's open-file limit allows (on a machine with a hard limit of
# 20,000: 19,000 clients).
#
#   benches/load/propagation.sh [rounds=20] [client counts="1000 10000"] [paths="direct relay"]
#
# PROTOCOLS="grpc sse" picks the protocols.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-20}
counts=${2:-"1000 10000"}
paths=${3:-"direct relay"}
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --locked -q -p rampart-server
cargo build --release --locked -q -p rampart-benches --bin propagation
token=propagation-bench-token-0001
relay_token=propagation-bench-relay-0001
# shellcheck source=lib/processes.sh
source benches/load/lib/processes.sh
printf 'tokens:\n  - {name: edge, role: relay, environments: [default], value: %s}\n' "$relay_token" > "$work/tokens.yaml"


# addresses BASE: the four listeners' flags of a process at BASE..BASE+3.
addresses() {
  echo "--http-addr 127.0.0.1:$1 --admin-addr 127.0.0.1:$(($1 + 1)) --grpc-addr 127.0.0.1:$(($1 + 2)) --sync-addr 127.0.0.1:$(($1 + 3))"
}

base=18900
for path in $paths; do
  for protocol in ${PROTOCOLS:-grpc sse}; do
    for clients in $counts; do
      # shellcheck disable=SC2046 # the addresses are separate words
      RAMPART_ADMIN_TOKEN=$token taskset -c 0 ./target/release/rampart serve --flags examples/flags.yaml \
        --admin-tokens "$work/tokens.yaml" --data-dir "$work/primary-$base" $(addresses $base) --log warn &
      server=$!
      pids=("$server")
      ready $((base + 1))
      serving=$server
      serving_base=$base
      if [ "$path" = relay ]; then
        # shellcheck disable=SC2046
        RAMPART_RELAY_TOKEN=$relay_token taskset -c 0 ./target/release/rampart relay \
          --upstream "http://127.0.0.1:$((base + 3))" --environment default --cache-dir "$work/relay-$base" \
          $(addresses $((base + 5))) --log warn &
        serving=$!
        pids+=("$serving")
        serving_base=$((base + 5))
        ready $((serving_base + 1))
      fi
      echo "$path: $clients $protocol clients"
      taskset -c 1 ./target/release/propagation --sync 127.0.0.1:$((serving_base + 3)) \
        --http http://127.0.0.1:$serving_base --admin http://127.0.0.1:$((base + 1)) --token $token \
        --clients "$clients" --protocol "$protocol" --rounds "$rounds" --server-pid "$serving" \
        || echo "FAILED path=$path protocol=$protocol clients=$clients"
      # The relay first, so it does not report losing its upstream.
      for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null || true; wait "${pids[i]}" 2>/dev/null || true; done
      pids=()
      base=$((base + 10))
    done
  done
done
