"""Writes OTLP/HTTP trace export bodies for benches/load/ofrep_with_otlp.sh:
COUNT exports (default 64) of 512 server spans each, ten attributes per
span and one `feature_flag.evaluation` event (the flag `new-checkout` of
examples/flags.yaml, variants `on`/`off`) — the realistic export of the
criterion bench, with distinct span ids in every file, built with the
official protobuf classes (PyPI `opentelemetry-proto`).

  PYTHONPATH=.deps/python python3 benches/load/otlp_exports.py DIR [COUNT]
"""
import os
import random
import sys

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status


def text(key, value):
    return KeyValue(key=key, value=AnyValue(string_value=value))


def export(seed):
    rng = random.Random(seed)
    spans = []
    for n in range(512):
        variant = "on" if rng.random() < 0.5 else "off"
        start = 1_700_000_000_000_000_000 + n * 1_000_000
        spans.append(Span(
            trace_id=rng.randbytes(16),
            span_id=rng.randbytes(8),
            name="GET /checkout",
            kind=Span.SPAN_KIND_SERVER,
            start_time_unix_nano=start,
            end_time_unix_nano=start + rng.randint(2, 400) * 1_000_000,
            attributes=[text("http.request.method", "GET"), text("url.path", "/checkout"),
                        text("http.route", "/checkout"), text("server.address", "shop.example.com"),
                        text("user_agent.original", "bench/1.0"), text("network.protocol.version", "1.1"),
                        text("client.address", "10.0.0.1"), text("url.scheme", "https"),
                        text("http.response.status_code", "200"), text("service.instance", f"i-{n % 8}")],
            events=[Span.Event(name="feature_flag.evaluation", time_unix_nano=start, attributes=[
                text("feature_flag.key", "new-checkout"), text("feature_flag.result.variant", variant),
                text("feature_flag.provider.name", "ofrep"), text("feature_flag.context.id", f"user-{n}"),
                text("feature_flag.result.reason", "TARGETING_MATCH")])],
            status=Status(code=Status.STATUS_CODE_OK),
        ))
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource={"attributes": [text("service.name", "shop")]},
        scope_spans=[ScopeSpans(spans=spans)])])
    return request.SerializeToString()


if __name__ == "__main__":
    directory = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    os.makedirs(directory, exist_ok=True)
    for i in range(count):
        with open(os.path.join(directory, f"export-{i}.pb"), "wb") as file:
            file.write(export(i))
    print(f"{count} exports in {directory}")
