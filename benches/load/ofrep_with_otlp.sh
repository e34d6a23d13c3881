#!/usr/bin/env bash
# OFREP evaluation latency with and without OTLP trace ingest beside it
# (issue 27: "evaluation latency unchanged"): the release binary on one
# core (one worker) with a ramp on `new-checkout` fed by spans, wrk on the
# other core. First OFREP alone, then OFREP while a second wrk posts
# realistic 512-span exports (benches/load/otlp_exports.py) to /v1/traces
# on OTLP_CONNECTIONS connections.
#
#   benches/load/ofrep_with_otlp.sh [seconds] [otlp-connections]
#
# Run it twice: closed-loop (saturating the server's core) and with
# RAMPART_BENCH_DELAY_MS=10 (a fixed rate, where latency is what a caller
# sees). Prints both RESULT lines (requests/s, p50/p90/p99/max in µs) and the
# OTLP line (exports and spans per second taken, their p99).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-15}
otlp_connections=${2:-2}
port=${RAMPART_BENCH_PORT:-18736}
command -v wrk >/dev/null || { echo "wrk is required: apt-get install wrk" >&2; exit 1; }
binary=${RAMPART_BENCH_BIN:-}
if [ -z "$binary" ]; then
  cargo build --release --locked -q -p rampart-server
  binary=./target/release/rampart
fi
work=$(mktemp -d)
PYTHONPATH=.deps/python python3 benches/load/otlp_exports.py "$work/exports" 64 >/dev/null
cat > "$work/ramp.yaml" <<'RAMP'
apiVersion: rampart.dev/v1
kind: Ramp
metadata: {name: checkout-bench}
spec:
  flag: new-checkout
  treatment: "off"
  control: "on"
  interval: 10s
  steps:
    - {percent: 50, hold: 1h}
  guard:
    minSamples: 1000000000
    absolute: {maxIncrease: 5%}
RAMP
cat > "$work/rampart.yaml" <<CONFIG
otlpHttpAddr: 127.0.0.1:$((port + 2))
environments:
  default:
    flags: [$PWD/examples/flags.yaml]
    ramps: [$work/ramp.yaml]
    sdkKeys: [{value: bench-sdk-key-000000001}]
    reporterKeys: [{value: bench-reporter-key-00001}]
CONFIG
export RAMPART_BENCH_SDK_KEY=bench-sdk-key-000000001
export RAMPART_BENCH_REPORTER_KEY=bench-reporter-key-00001
export RAMPART_BENCH_EXPORTS="$work/exports"
taskset -c 0 "$binary" serve --config "$work/rampart.yaml" --data-dir "$work/data" \
  --http-addr "127.0.0.1:$port" --admin-addr "127.0.0.1:$((port + 1))" --workers 1 --log warn &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$((port + 1))/healthz" >/dev/null && break
  sleep 0.1
done
client_core=$(( $(nproc) > 1 ? 1 : 0 ))
# RAMPART_BENCH_OTLP_DELAY_MS=<ms>: each OTLP connection waits that long
# between exports (keep under the key's 200 requests/s, or exports get 429).
# RAMPART_BENCH_DELAY_MS=<ms>: each OFREP connection waits that long between
# requests (a fixed rate below saturation: 64 connections at 10 ms ≈ 6,400/s).
ofrep() { taskset -c "$client_core" wrk -t1 -c64 -d"$1" --latency -s benches/load/ofrep.lua "http://127.0.0.1:$port"; }
ofrep 2s >/dev/null
echo "== OFREP alone (${seconds}s, 64 connections)"
ofrep "${seconds}s" | grep RESULT
echo "== OFREP with OTLP ingest beside it ($otlp_connections connections posting 512-span exports)"
taskset -c "$client_core" wrk -t1 -c"$otlp_connections" -d"$((seconds + 2))s" -s benches/load/otlp_exports.lua \
  "http://127.0.0.1:$((port + 2))" | grep OTLP &
otlp=$!
sleep 1
ofrep "${seconds}s" | grep RESULT
wait $otlp
