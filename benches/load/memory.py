#!/usr/bin/env python3
"""Resident memory of the release server through a burst (docs/limits.md,
"Memory after a burst"): idle with a 1 MB configuration, after a 200 MB
flag file is refused, with 2,000 SSE clients that never read, after 20
changes, after they disconnect, and after the next requests.

    cargo build --release --locked -p rampart-server
    python3 benches/load/memory.py target/release/rampart
"""
import json, os, resource, socket, subprocess, sys, tempfile, time, urllib.request

resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
binary = sys.argv[1]
directory = tempfile.mkdtemp()
flags_path = os.path.join(directory, "flags.json")
flags = {"flags": {f"f{i}": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}
                   for i in range(10000)}}
with open(flags_path, "w") as f:
    json.dump(flags, f)


def rss(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return f"{int(line.split()[1]) // 1024} MiB"


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


server = subprocess.Popen(
    [binary, "serve", "--flags", os.path.join(directory, "*.json"), "--data-dir", os.path.join(directory, "data"),
     "--http-addr", "127.0.0.1:18916", "--admin-addr", "127.0.0.1:18914", "--grpc-addr", "127.0.0.1:18913",
     "--sync-addr", "127.0.0.1:18915", "--log", "warn"],
    stderr=subprocess.DEVNULL)
try:
    for _ in range(100):
        try:
            urllib.request.urlopen("http://127.0.0.1:18914/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    time.sleep(1)
    print("idle (10,000 flags, 1 MB):", rss(server.pid))
    with open(os.path.join(directory, "huge.json"), "w") as f:
        pad = "x" * 2000
        f.write('{"flags": {' + ",".join(
            f'"g{i}": {{"state": "ENABLED", "variants": {{"on": true}}, "defaultVariant": "on", "metadata": {{"pad": "{pad}"}}}}'
            for i in range(100000)) + "}}")
    time.sleep(3)
    print("after a refused 200 MB file:", rss(server.pid))
    clients = []
    for _ in range(2000):
        client = socket.create_connection(("127.0.0.1", 18916))
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.sendall(b"GET /v1/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        clients.append(client)
    time.sleep(3)
    print("2,000 SSE clients not reading:", rss(server.pid), f"({open_fds(server.pid)} fds)")
    for i in range(20):
        flags["flags"]["f0"]["defaultVariant"] = "off" if i % 2 == 0 else "on"
        with open(flags_path + ".tmp", "w") as f:
            json.dump(flags, f)
        os.rename(flags_path + ".tmp", flags_path)
        time.sleep(0.3)
    time.sleep(2)
    print("after 20 changes, still not reading:", rss(server.pid))
    for client in clients:
        client.close()
    time.sleep(3)
    print("after they disconnect:", rss(server.pid), f"({open_fds(server.pid)} fds)")
    for _ in range(3000):
        request = urllib.request.Request("http://127.0.0.1:18916/ofrep/v1/evaluate/flags/f1", data=b"{}",
                                         headers={"content-type": "application/json"})
        urllib.request.urlopen(request, timeout=2).read()
    time.sleep(1)
    print("after the next 3,000 requests:", rss(server.pid))
finally:
    server.terminate()
    server.wait()
