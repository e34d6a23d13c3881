#!/usr/bin/env bash
# Server load benchmark: the release binary on the example flags, driven
# by wrk with OFREP single-flag requests (a new targeting key each time),
# server and load generator pinned to different cores.
#
#   benches/load/ofrep.sh [connections] [seconds] [server-workers]
#
# RAMPART_BENCH_SDK_KEY=<key>: the environment requires that SDK key and
# every request sends it (the cost of checking a key).
# RAMPART_BENCH_BIN=<path>: measure that binary instead of building
# target/release/rampart (e.g. a copy of the previous build, for a before
# and after).
#
# Prints wrk's report and a RESULT line (requests/s, p50/p90/p99/max in µs).
set -euo pipefail
cd "$(dirname "$0")/../.."
connections=${1:-64}
seconds=${2:-15}
workers=${3:-1}
port=${RAMPART_BENCH_PORT:-18716}

if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  else
    echo "wrk is required: apt-get install wrk" >&2; exit 1
  fi
fi
binary=${RAMPART_BENCH_BIN:-}
if [ -z "$binary" ]; then
  cargo build --release --locked -q -p rampart-server
  binary=./target/release/rampart
fi
cores=$(nproc)
server_core=0
client_core=$(( cores > 1 ? 1 : 0 ))

# RAMPART_BENCH_REDIS_URL: run on the Redis store instead of the embedded one.
store=()
if [ -n "${RAMPART_BENCH_REDIS_URL:-}" ]; then store=(--redis-url "$RAMPART_BENCH_REDIS_URL" --redis-prefix "ofrep$$"); fi
flags=(--flags examples/flags.yaml)
if [ -n "${RAMPART_BENCH_SDK_KEY:-}" ]; then
  config=$(mktemp --suffix .yaml)
  printf 'environments:\n  default:\n    flags: [%s]\n    sdkKeys: [{env: RAMPART_BENCH_SDK_KEY}]\n' \
    "$PWD/examples/flags.yaml" > "$config"
  flags=(--config "$config")
fi
taskset -c "$server_core" "$binary" serve "${flags[@]}" "${store[@]}" \
  --http-addr "127.0.0.1:$port" --admin-addr "127.0.0.1:$((port + 1))" --workers "$workers" --log warn &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$((port + 1))/healthz" >/dev/null && break
  sleep 0.1
done

echo "server: core $server_core, $workers worker(s); wrk: core $client_core, $connections connections, ${seconds}s"
# Warm up, then measure.
taskset -c "$client_core" wrk -t1 -c"$connections" -d2s -s benches/load/ofrep.lua "http://127.0.0.1:$port" >/dev/null
taskset -c "$client_core" wrk -t1 -c"$connections" -d"${seconds}s" --latency -s benches/load/ofrep.lua "http://127.0.0.1:$port"
