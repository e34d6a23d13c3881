#!/usr/bin/env python3
"""How the embedded store and the server's memory grow under a burst of large
admin writes, and what a restart gives back (issue 24 item 6).

    python3 benches/load/store_growth.py target/release/rampart [PUTS] [FLAGS]

PUTS definitions of 200-250 KB (default 1,600) spread over FLAGS API-owned
flags (default 8), as fast as one connection sends them, with the write rate
raised out of the way (the default, limits.adminWritesPerSecond, would hold
a token to 50 a second). Prints the server's RSS and the data file's size
before, after, and after a restart (which compacts the store).
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BINARY = sys.argv[1] if len(sys.argv) > 1 else "target/release/rampart"
PUTS = int(sys.argv[2]) if len(sys.argv) > 2 else 1600
FLAGS = int(sys.argv[3]) if len(sys.argv) > 3 else 8
TOKEN = "store-growth-admin-token-0123456789"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(config, data):
    admin = free_port()
    args = [BINARY, "serve", "--config", config, "--data-dir", data, "--admin-addr", f"127.0.0.1:{admin}"]
    for flag in ["--http-addr", "--grpc-addr", "--sync-addr"]:
        args += [flag, f"127.0.0.1:{free_port()}"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{admin}"
    deadline = time.monotonic() + 600  # a restart may compact a large store first
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1)
            return process, url
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the server did not start")


def rss_mib(process):
    with open(f"/proc/{process.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    work = tempfile.mkdtemp()
    with open(os.path.join(work, "flags.yaml"), "w") as f:
        f.write("flags:\n  f:\n    state: ENABLED\n    variants: {on: true}\n    defaultVariant: \"on\"\n")
    config = os.path.join(work, "rampart.yaml")
    with open(config, "w") as f:
        f.write(f"environments:\n  default:\n    flags: [flags.yaml]\nadminTokens:\n  - {{name: w, role: write, value: {TOKEN}}}\n"
                "limits:\n  adminWritesPerSecond: 100000\n")
    data = os.path.join(work, "data")
    store = os.path.join(data, "rampart.redb")
    process, url = start(config, data)
    print(f"idle: RSS {rss_mib(process):.0f} MiB")
    started = time.monotonic()
    for n in range(PUTS):
        size = 200_000 + (n * 7919) % 50_000
        body = json.dumps({"state": "ENABLED", "variants": {"v": f"{n}" + "x" * size}, "defaultVariant": "v"}).encode()
        request = urllib.request.Request(f"{url}/admin/v1/environments/default/flags/wide-{n % FLAGS}", data=body,
                                         method="PUT", headers={"Authorization": f"Bearer {TOKEN}",
                                                                "Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=30).read()
    elapsed = time.monotonic() - started
    print(f"{PUTS} PUTs in {elapsed:.1f} s: RSS {rss_mib(process):.0f} MiB, data file {os.path.getsize(store) / 2**20:.0f} MiB")
    process.terminate()
    process.wait()
    process, url = start(config, data)
    print(f"after a restart (compaction): RSS {rss_mib(process):.0f} MiB, data file {os.path.getsize(store) / 2**20:.0f} MiB")
    process.terminate()
    process.wait()


if __name__ == "__main__":
    main()
