"""Time from a regression starting to the rollback, with OTLP spans as the
only evidence (issue 27).

Starts `rampart` (RAMPART_BIN, default target/release/rampart) with one
ramp (`interval`, default 5 s; 50 % step, minSamples 200, maxIncrease
2 %), then sends OTLP/HTTP trace exports built with the official protobuf
classes (PyPI `opentelemetry-proto`, installed by scripts/install-test-deps
into .deps/python): RATE server spans a second, split between the arms as
the step's percent says, 1 % failing in both arms — until the step has its
samples — then the treatment's failures jump to 10 %. Prints the seconds
from the jump to the rollback, and that in check intervals.

  PYTHONPATH=.deps/python python3 benches/load/otlp_rollback.py 100 1000
"""
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

REPORTER = "bench-reporter-key-0001"
INTERVAL = int(os.environ.get("INTERVAL_SECONDS", "5"))
FLAGS = 'flags:\n  search-engine:\n    state: ENABLED\n    variants: {vector: vector, classic: classic}\n    defaultVariant: classic\n'
RAMP = f"""apiVersion: rampart.dev/v1
kind: Ramp
metadata: {{name: search-v2}}
spec:
  flag: search-engine
  treatment: vector
  interval: {INTERVAL}s
  steps:
    - {{percent: 50, hold: 1h}}
    - {{percent: 100, hold: 1h}}
  guard:
    minSamples: 200
    absolute: {{maxErrorRate: 50%, maxIncrease: 2%}}
"""


def text(key, value):
    return KeyValue(key=key, value=AnyValue(string_value=value))


def start(directory):
    with open(os.path.join(directory, "flags.yaml"), "w") as f:
        f.write(FLAGS)
    with open(os.path.join(directory, "ramp.yaml"), "w") as f:
        f.write(RAMP)
    config = os.path.join(directory, "rampart.yaml")
    with open(config, "w") as f:
        f.write(
            "httpAddr: 127.0.0.1:0\nadminAddr: 127.0.0.1:0\ngrpcAddr: 127.0.0.1:0\nsyncAddr: 127.0.0.1:0\n"
            "otlpHttpAddr: 127.0.0.1:0\nlogFormat: json\n"
            f"environments:\n  default:\n    flags: [flags.yaml]\n    ramps: [ramp.yaml]\n"
            f"    sdkKeys: [{{value: bench-sdk-key-000001}}]\n    reporterKeys: [{{value: {REPORTER}}}]\n"
            "limits:\n  outcomeSourceWindowSeconds: 1\n  outcomeReportsPerSecond: 1000\n"
        )
    binary = os.environ.get("RAMPART_BIN", "target/release/rampart")
    process = subprocess.Popen(
        [binary, "serve", "--config", config, "--admin-insecure-local", "--data-dir", os.path.join(directory, "data")],
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in process.stderr:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") == "listening":
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
            return process, entry["admin_addr"], entry["otlp_http_addr"]
    raise SystemExit("rampart did not start")


def status(admin):
    with urllib.request.urlopen(f"http://{admin}/admin/v1/ramps/default/search-v2") as response:
        return json.load(response)


def export(otlp, spans):
    body = ExportTraceServiceRequest()
    resource_spans = body.resource_spans.add()
    resource_spans.resource.attributes.append(text("service.name", "bench"))
    resource_spans.scope_spans.add().spans.extend(spans)
    request = urllib.request.Request(
        f"http://{otlp}/v1/traces",
        data=body.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {REPORTER}"},
    )
    urllib.request.urlopen(request, timeout=10).read()


def span(variant, failed):
    event = Span.Event(name="feature_flag.evaluation")
    event.attributes.extend([text("feature_flag.key", "search-engine"), text("feature_flag.result.variant", variant)])
    result = Span(
        trace_id=random.getrandbits(128).to_bytes(16, "big"),
        span_id=random.getrandbits(64).to_bytes(8, "big"),
        name="GET /search",
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=time.time_ns(),
        end_time_unix_nano=time.time_ns() + 1_000_000,
    )
    result.events.append(event)
    if failed:
        result.status.code = Status.STATUS_CODE_ERROR
    return result


def run(rate):
    with tempfile.TemporaryDirectory() as directory:
        process, admin, otlp = start(directory)
        try:
            treatment_errors = 0.01
            regression_at = None
            tick = 0.1
            while True:
                started = time.monotonic()
                current = status(admin)
                if current["state"] == "RolledBack":
                    elapsed = time.monotonic() - regression_at
                    return elapsed
                evidence = current.get("evidence") or {}
                samples = min(
                    (evidence.get("treatment") or {}).get("exposures", 0),
                    (evidence.get("control") or {}).get("exposures", 0),
                )
                if regression_at is None and current["state"] != "Pending" and samples >= 200:
                    treatment_errors, regression_at = 0.10, time.monotonic()
                spans = []
                for _ in range(int(rate * tick)):
                    treatment = random.random() < 0.5
                    failed = random.random() < (treatment_errors if treatment else 0.01)
                    spans.append(span("vector" if treatment else "classic", failed))
                export(otlp, spans)
                time.sleep(max(0.0, tick - (time.monotonic() - started)))
        finally:
            process.terminate()
            process.wait()


def main():
    for rate in [int(r) for r in sys.argv[1:] or ["100", "1000"]]:
        elapsed = run(rate)
        print(f"{rate} spans/s: rolled back {elapsed:.1f} s after the regression started "
              f"({elapsed / INTERVAL:.1f} check intervals of {INTERVAL} s)", flush=True)


if __name__ == "__main__":
    main()
