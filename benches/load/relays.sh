#!/usr/bin/env bash
# Relays (issue 18), on the release binary:
#
# 1. Propagation: a primary, two relays of it (level 1) and one relay of
#    each of those (level 2), all on core 0. N stream clients on each relay
#    of a level (core 1); changes through the primary's admin API; the
#    latency from the primary's 2xx to receipt by every client.
# 2. OFREP throughput of a relay against a primary's (one worker on core 0,
#    wrk on core 1, the example flags; the relay's upstream idles on core 1).
# 3. Memory: RSS of a primary and of its relay serving 10,000 flags.
# 4. A change in an environment of 100,000 flags: from the primary's 2xx
#    until the relay answers OFREP with it (polling), five changes.
#
#   benches/load/relays.sh [rounds=20] [clients per relay=1000] [protocols="grpc sse"]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-20}
per_relay=${2:-1000}
protocols=${3:-"grpc sse"}
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --locked -q -p rampart-server
cargo build --release --locked -q -p rampart-benches --bin propagation
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
admin=relays-bench-admin-token-01
relay=relays-bench-relay-token-01
# shellcheck source=lib/processes.sh
source benches/load/lib/processes.sh
printf 'tokens:\n  - {name: edge, role: relay, environments: [default], value: %s}\n' "$relay" > "$work/tokens.yaml"

# primary CORE BASE FLAGS [workers]
primary() {
  RAMPART_ADMIN_TOKEN=$admin taskset -c "$1" ./target/release/rampart serve --flags "$3" \
    --admin-tokens "$work/tokens.yaml" --data-dir "$work/primary-$2" --workers "${4:-1}" \
    --http-addr "127.0.0.1:$2" --admin-addr "127.0.0.1:$(($2 + 1))" \
    --grpc-addr "127.0.0.1:$(($2 + 2))" --sync-addr "127.0.0.1:$(($2 + 3))" --log warn &
  pids+=($!)
  ready "$(($2 + 1))"
}

# relay CORE BASE UPSTREAM_BASE [workers]
relay() {
  RAMPART_RELAY_TOKEN=$relay taskset -c "$1" ./target/release/rampart relay \
    --upstream "http://127.0.0.1:$(($3 + 3))" --environment default --cache-dir "$work/relay-$2" --workers "${4:-1}" \
    --http-addr "127.0.0.1:$2" --admin-addr "127.0.0.1:$(($2 + 1))" \
    --grpc-addr "127.0.0.1:$(($2 + 2))" --sync-addr "127.0.0.1:$(($2 + 3))" --log warn &
  pids+=($!)
  ready "$(($2 + 1))"
}

stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  pids=()
}

rss_mib() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

for protocol in $protocols; do
  primary 0 19100 examples/flags.yaml
  relay 0 19110 19100
  relay 0 19120 19100
  relay 0 19130 19110
  relay 0 19140 19120
  echo "one level: $per_relay $protocol clients on each of two relays of the primary"
  taskset -c 1 ./target/release/propagation --sync 127.0.0.1:19113,127.0.0.1:19123 \
    --http http://127.0.0.1:19110,http://127.0.0.1:19120 --admin http://127.0.0.1:19101 --token $admin \
    --clients $((2 * per_relay)) --protocol "$protocol" --rounds "$rounds" || echo "FAILED level=1 protocol=$protocol"
  echo "two levels: $per_relay $protocol clients on each of two relays of relays"
  taskset -c 1 ./target/release/propagation --sync 127.0.0.1:19133,127.0.0.1:19143 \
    --http http://127.0.0.1:19130,http://127.0.0.1:19140 --admin http://127.0.0.1:19101 --token $admin \
    --clients $((2 * per_relay)) --protocol "$protocol" --rounds "$rounds" || echo "FAILED level=2 protocol=$protocol"
  stop_all
done

ofrep() {
  taskset -c 1 wrk -t1 -c64 -d2s -s benches/load/ofrep.lua "http://127.0.0.1:$1" >/dev/null
  taskset -c 1 wrk -t1 -c64 -d10s -s benches/load/ofrep.lua "http://127.0.0.1:$1" | grep RESULT
}
echo "OFREP, primary (core 0, one worker):"
primary 0 19200 examples/flags.yaml
ofrep 19200
stop_all
echo "OFREP, relay (core 0, one worker; its primary idles on core 1):"
primary 1 19200 examples/flags.yaml
relay 0 19210 19200
ofrep 19210
stop_all

echo "memory with 10,000 flags:"
python3 benches/load/scale.py --write "$work/flags.json" 10000
primary 1 19300 "$work/flags.json"
relay 0 19310 19300
sleep 2 # let allocations settle
echo "RESULT memory flags=10000 primary_rss_mib=$(rss_mib "${pids[0]}") relay_rss_mib=$(rss_mib "${pids[1]}")"
stop_all

echo "a change among 100,000 flags:"
python3 benches/load/scale.py --write "$work/flags.json" 100000
primary 1 19400 "$work/flags.json"
relay 0 19410 19400
for i in 1 2 3 4 5; do
  start=$(date +%s%N)
  curl -fs -X PUT -H "authorization: Bearer $admin" -H 'content-type: application/json' \
    -d "{\"state\":\"ENABLED\",\"variants\":{\"v\":$i},\"defaultVariant\":\"v\"}" \
    http://127.0.0.1:19401/admin/v1/environments/default/flags/probe >/dev/null
  acked=$(date +%s%N)
  until curl -fs -X POST -d '{}' http://127.0.0.1:19410/ofrep/v1/evaluate/flags/probe | grep -q "\"value\":$i"; do :; done
  seen=$(date +%s%N)
  echo "RESULT change=$i flags=100000 admin_ms=$(( (acked - start) / 1000000 )) relay_serves_after_ms=$(( (seen - acked) / 1000000 ))"
done
echo "RESULT memory flags=100000 primary_rss_mib=$(rss_mib "${pids[0]}") relay_rss_mib=$(rss_mib "${pids[1]}")"
stop_all
