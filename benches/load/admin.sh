#!/usr/bin/env bash
# Admin write benchmark: durable flag writes (PUT) alone, OFREP evaluation
# alone, then both at once, to show that evaluation does not slow down
# during a write burst. Server on core 0, load generators on core 1.
#
#   benches/load/admin.sh [seconds=10] [write-connections=4] [eval-connections=64]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-10}
writers=${2:-4}
readers=${3:-64}
port=${RAMPART_BENCH_PORT:-18736}
export RAMPART_BENCH_TOKEN=bench-admin-token-000000001

command -v wrk >/dev/null || { echo "wrk is required: apt-get install wrk" >&2; exit 1; }
cargo build --release --locked -q -p rampart-server
data=$(mktemp -d)
RAMPART_ADMIN_TOKEN=$RAMPART_BENCH_TOKEN taskset -c 0 ./target/release/rampart serve --flags examples/flags.yaml \
  --data-dir "$data" --http-addr "127.0.0.1:$port" --admin-addr "127.0.0.1:$((port + 1))" --workers 1 --log warn &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$((port + 1))/healthz" >/dev/null && break; sleep 0.1; done

eval_run() { taskset -c 1 wrk -t1 -c"$readers" -d"${seconds}s" -s benches/load/ofrep.lua "http://127.0.0.1:$port" | grep RESULT; }
write_run() { taskset -c 1 wrk -t1 -c"$writers" -d"${seconds}s" -s benches/load/admin_put.lua "http://127.0.0.1:$((port + 1))" | grep RESULT; }

echo "== evaluation alone ($readers connections)"; eval_run
echo "== writes alone ($writers connections, fsync per write)"; write_run
echo "== both at once"
write_run > "$data/writes.txt" &
writes=$!
eval_run | sed 's/^/evaluation: /'
wait $writes
sed 's/^/writes:     /' "$data/writes.txt"
