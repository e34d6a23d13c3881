# Sourced by the load scripts that start several Rampart processes: a work
# folder and the processes in `pids`, both gone at exit, and `ready`.

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# ready ADMIN_PORT: waits until the Rampart process there reports ready.
ready() {
  for _ in $(seq 300); do
    curl -fs "http://127.0.0.1:$1/readyz" 2>/dev/null | grep -q '"status":"ready"' && return 0
    sleep 0.1
  done
  echo "127.0.0.1:$1 did not become ready" >&2
  exit 1
}
