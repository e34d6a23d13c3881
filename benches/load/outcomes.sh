#!/usr/bin/env bash
# Outcome reports at volume: `POST /v1/outcomes` against a ramped flag,
# every accepted report durable (embedded store) before its reply. Server on
# core 0 with one HTTP worker, wrk on core 1. Issue 16's goal: at least
# 20,000 requests/s on one core.
#
#   benches/load/outcomes.sh [seconds=10] [connections=64]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-10}
connections=${2:-64}
port=${RAMPART_BENCH_PORT:-18746}

command -v wrk >/dev/null || { echo "wrk is required: apt-get install wrk" >&2; exit 1; }
cargo build --release --locked -q -p rampart-server
dir=$(mktemp -d)
cat > "$dir/ramp.yaml" <<'YAML'
apiVersion: rampart.dev/v1
kind: Ramp
metadata: {name: checkout-v2}
spec:
  flag: one-page-checkout
  treatment: "on"
  control: "off"
  interval: 10s
  steps:
    - {percent: 50, hold: 24h}
    - {percent: 100, hold: 1h}
YAML
cat > "$dir/rampart.yaml" <<YAML
httpAddr: 127.0.0.1:$port
adminAddr: 127.0.0.1:$((port + 1))
grpcAddr: 127.0.0.1:$((port + 2))
syncAddr: 127.0.0.1:$((port + 3))
dataDir: $dir/data
workers: 1
limits: {outcomeReportsPerSecond: 1000000}
environments:
  default:
    flags: [$PWD/examples/flags.yaml]
    ramps: [$dir/ramp.yaml]
YAML
taskset -c 0 ./target/release/rampart serve --config "$dir/rampart.yaml" --admin-insecure-local --log warn &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$((port + 1))/healthz" >/dev/null && break; sleep 0.1; done
# Until the ramp has started, reports are not counted (and not written).
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$((port + 1))/admin/v1/ramps/default/checkout-v2" 2>/dev/null | grep -q '"state":"Ramping"' && break
  sleep 0.1
done
echo "== outcome reports ($connections connections, $seconds s)"
taskset -c 1 wrk -t1 -c"$connections" -d"${seconds}s" -s benches/load/outcomes.lua "http://127.0.0.1:$port" | grep RESULT
curl -s "http://127.0.0.1:$((port + 1))/metrics" | grep '^rampart_outcomes_total' || true
