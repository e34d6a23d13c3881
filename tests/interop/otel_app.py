"""A small web service instrumented the usual way: OpenTelemetry's SDK with
its OTLP exporter (HTTP, or gRPC when OTEL_EXPORTER_OTLP_TRACES_PROTOCOL is
grpc), OpenFeature with the OFREP provider and the
OpenTelemetry hook from PyPI. Nothing in it is written for Rampart: the
OFREP endpoint and flag key, and the OTLP exporter (OTEL_EXPORTER_OTLP_*),
come from the environment, as they would in production.

It serves GET /search?user=ID: a server span, the `search-engine` flag
evaluated inside it, and a failure (HTTP 500, span status ERROR) with the
probability ERROR_RATES gives for the engine served, and takes SLOW's
seconds in SLOW's share of requests — the regressions a test injects. With LOAD_PER_SECOND set it also calls itself at that rate,
each call a new user. Prints "ready PORT" once serving; stops when stdin
closes.
"""
import json
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from openfeature import api
from openfeature.contrib.hook.opentelemetry import TracingHook
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext

if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
else:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

tracer_provider = TracerProvider(resource=Resource.create({"service.name": "search-api"}))
tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(tracer_provider)
tracer = trace.get_tracer("search-api")

flag_key = os.environ["FLAG_KEY"]
api.set_provider(
    OFREPProvider(os.environ["OFREP_URL"], headers_factory=lambda: {"Authorization": f"Bearer {flag_key}"})
)
api.add_hooks([TracingHook()])
flags = api.get_client()
error_rates = json.loads(os.environ.get("ERROR_RATES", "{}"))
# engine -> [probability, seconds]: the share of requests that take that long
slow = json.loads(os.environ.get("SLOW", "{}"))


class Search(BaseHTTPRequestHandler):
    def do_GET(self):
        user = self.path.rsplit("=", 1)[-1]
        with tracer.start_as_current_span("GET /search", kind=SpanKind.SERVER) as span:
            engine = flags.get_string_value("search-engine", "classic", EvaluationContext(targeting_key=user))
            share, seconds = slow.get(engine, [0.0, 0.0])
            if random.random() < share:
                time.sleep(seconds)
            failed = random.random() < error_rates.get(engine, 0.0)
            status = 500 if failed else 200
            span.set_attribute("http.response.status_code", status)
            if failed:
                span.set_status(Status(StatusCode.ERROR))
        self.send_response(status)
        self.end_headers()
        self.wfile.write(engine.encode())

    def log_message(self, *args):
        pass


def load(port: int, pause: float) -> None:
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/search?user=u{random.getrandbits(48)}", timeout=10).read()
        except urllib.error.HTTPError:
            pass  # the injected failures
        time.sleep(pause)


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Search)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    per_second = float(os.environ.get("LOAD_PER_SECOND", "0"))
    threads = 4
    for _ in range(threads if per_second else 0):
        threading.Thread(target=load, args=(port, threads / per_second), daemon=True).start()
    print(f"ready {port}", flush=True)
    sys.stdin.read()
    tracer_provider.shutdown()


if __name__ == "__main__":
    main()
