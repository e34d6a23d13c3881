#!/usr/bin/env bash
# Instructions the server executes per client change (gRPC and SSE stream
# clients) and per OFREP evaluation, counted by valgrind's callgrind: the
# same figure however loaded the machine is, so two builds can be compared
# on a busy day. Each figure is the difference between a short and a long
# run divided by the extra work, so start-up and connecting cancel out.
#
#   benches/load/instructions.sh [binary=target/release/rampart] [clients=1000]
#
# Prints `RESULT what=… instructions_per=…`. Needs valgrind.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/release/rampart}
clients=${2:-1000}
command -v valgrind >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --locked -q -p rampart-benches --bin propagation
token=instructions-bench-token-0001
work=$(mktemp -d)
server=
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
base=18970

# counted RUN_NAME COMMAND...: starts the server under callgrind, runs the
# command against it, stops the server; prints the instructions counted.
counted() {
  local name=$1
  shift
  RAMPART_ADMIN_TOKEN=$token taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$work/$name.out" \
    "$bin" serve --flags examples/flags.yaml --data-dir "$work/data-$name" --workers 1 \
    --http-addr 127.0.0.1:$base --admin-addr 127.0.0.1:$((base + 1)) --grpc-addr 127.0.0.1:$((base + 2)) \
    --sync-addr 127.0.0.1:$((base + 3)) --log warn 2>"$work/$name.log" &
  server=$!
  for _ in $(seq 600); do curl -fs "http://127.0.0.1:$((base + 1))/healthz" >/dev/null && break; sleep 0.2; done
  # (This runs in a command substitution, where the EXIT trap does not:
  # a failed run stops its server itself.)
  "$@" >"$work/$name.client" || {
    echo "FAILED $name" >&2
    cat "$work/$name.client" >&2
    kill "$server" 2>/dev/null
    exit 1
  }
  kill -INT "$server"
  wait "$server" 2>/dev/null || true
  server=
  awk '/^summary:/ {print $2}' "$work/$name.out"
}

stream() { # PROTOCOL ROUNDS
  taskset -c 1 ./target/release/propagation --sync 127.0.0.1:$((base + 3)) --http http://127.0.0.1:$base \
    --admin http://127.0.0.1:$((base + 1)) --token $token --clients "$clients" --protocol "$1" --rounds "$2"
}

ofrep() { # REQUESTS, on one keep-alive connection
  taskset -c 1 python3 - "$base" "$1" <<'PY'
import http.client, json, sys
connection = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
body = json.dumps({"context": {"targetingKey": "user-1", "email": "a@example.com"}})
for _ in range(int(sys.argv[2])):
    connection.request("POST", "/ofrep/v1/evaluate/flags/welcome-banner", body, {"content-type": "application/json"})
    response = connection.getresponse()
    response.read()
    assert response.status == 200, response.status
PY
}

for protocol in grpc sse; do
  short=$(counted "$protocol-5" stream "$protocol" 5)
  long=$(counted "$protocol-25" stream "$protocol" 25)
  echo "RESULT what=${protocol}_client_change instructions_per=$(((long - short) / (20 * clients)))"
done
short=$(counted ofrep-1000 ofrep 1000)
long=$(counted ofrep-6000 ofrep 6000)
echo "RESULT what=ofrep_evaluation instructions_per=$(((long - short) / 5000))"
