#!/usr/bin/env python3
"""What an environment of N flags costs the release server (issue 16's
table): start-up time, RSS after start, RSS after one reload and after ten
and once idle (the allocator has returned what the work freed),
the median admin PUT of one API flag, and one bulk OFREP answer.

Flags come in three shapes, a third each: a static boolean; three
targeting clauses and a three-way `fractional`; a `sem_ver` rule.

    cargo build --release --locked -p rampart-server
    python3 benches/load/scale.py target/release/rampart [1000 10000 100000]
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, time, urllib.request

TOKEN = "scale-bench-admin-token-0001"
ADMIN, HTTP = "http://127.0.0.1:18924", "http://127.0.0.1:18926"


def shape(i, generation=0):
    variants = {"a": "A", "b": "B", "c": "C"}
    if i % 3 == 0:
        targeting = {}
    elif i % 3 == 1:
        targeting = {"if": [{"in": [{"var": "country"}, ["de", "fr"]]}, "a",
                            {"starts_with": [{"var": "email"}, "ops@"]}, "b",
                            {"ends_with": [{"var": "email"}, "@example.com"]}, "c",
                            {"fractional": [["a", 34], ["b", 33], ["c", 33]]}]}
    else:
        targeting = {"if": [{"sem_ver": [{"var": "version"}, ">=", f"2.{generation}.0"]}, "a", "b"]}
    return {"state": "ENABLED", "variants": variants, "defaultVariant": "a", "targeting": targeting}


def write_flags(path, n, generation=0):
    flags = {f"flag-{i:06}": shape(i, generation if i == 2 else 0) for i in range(n)}
    with open(path + ".tmp", "w") as f:
        json.dump({"flags": flags}, f)
    os.replace(path + ".tmp", path)


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def request(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=60) as response:
        return response.status, response.read()


def version():
    _, body = request("GET", f"{ADMIN}/admin/v1/environments", headers={"Authorization": f"Bearer {TOKEN}"})
    return json.loads(body)["environments"][0]["version"]


def wait_for(what, check, deadline=120):
    started = time.monotonic()
    while time.monotonic() - started < deadline:
        try:
            if check():
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


def measure(n):
    directory = tempfile.mkdtemp()
    flags = os.path.join(directory, "flags.json")
    write_flags(flags, n)
    config = os.path.join(directory, "rampart.yaml")
    with open(config, "w") as f:
        f.write("limits: {flagFileBytes: 1000000000, flagFileNodes: 100000000, responseBytes: 1000000000}\n"
                f"environments:\n  default:\n    flags: [{flags}]\n")
    started = time.monotonic()
    server = subprocess.Popen(
        [binary, "serve", "--config", config, "--data-dir", os.path.join(directory, "data"),
         "--http-addr", HTTP[7:], "--admin-addr", ADMIN[7:], "--grpc-addr", "127.0.0.1:18923",
         "--sync-addr", "127.0.0.1:18925", "--log", "warn"],
        env={**os.environ, "RAMPART_ADMIN_TOKEN": TOKEN}, stderr=subprocess.DEVNULL)
    try:
        wait_for("the server", lambda: request("GET", f"{ADMIN}/healthz")[0] == 200)
        startup = time.monotonic() - started
        time.sleep(1)
        after_start = rss_mib(server.pid)
        reloads = []
        rss_reloads = []
        for generation in range(1, 11):
            before = version()
            write_flags(flags, n, generation)
            reloads.append(wait_for("the reload", lambda: version() > before))
            time.sleep(0.5)
            rss_reloads.append(rss_mib(server.pid))
        puts = []
        for i in range(21):
            body = json.dumps({"state": "ENABLED", "variants": {"a": "A", "b": str(i)}, "defaultVariant": "a"}).encode()
            t = time.monotonic()
            request("PUT", f"{ADMIN}/admin/v1/environments/default/flags/api-flag", body,
                    {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
            puts.append(time.monotonic() - t)
        t = time.monotonic()
        _, bulk = request("POST", f"{HTTP}/ofrep/v1/evaluate/flags", b'{"context": {"targetingKey": "u1"}}',
                          {"Content-Type": "application/json"})
        bulk_time = time.monotonic() - t
        # Idle until the allocator has returned what the work freed (its
        # decay time): RSS falling no more over 3 s, at most 30 s.
        settled, steady, started = rss_mib(server.pid), 0, time.monotonic()
        while steady < 3 and time.monotonic() - started < 30:
            time.sleep(1)
            now = rss_mib(server.pid)
            steady = steady + 1 if now >= settled - 0.5 else 0
            settled = min(settled, now)
        print(f"| {n:,} | {startup:.1f} s | {after_start:.0f} MiB | {rss_reloads[0]:.0f} MiB | "
              f"{rss_reloads[-1]:.0f} MiB | {settled:.0f} MiB | {statistics.median(reloads) * 1000:.0f} ms | "
              f"{statistics.median(puts) * 1000:.1f} ms | {bulk_time * 1000:.0f} ms ({len(bulk) / 1000:.0f} KB) |",
              flush=True)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    # `python3 scale.py --write FILE N` only writes the flags (for other benches).
    if sys.argv[1] == "--write":
        write_flags(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    binary = sys.argv[1]
    sizes = [int(n) for n in sys.argv[2:]] or [1000, 10000, 100000]
    print("| flags | start-up | RSS after start | after 1 reload | after 10 reloads | then idle (settled) | reload (1 flag changed) | admin PUT (median) | bulk OFREP |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        measure(n)
