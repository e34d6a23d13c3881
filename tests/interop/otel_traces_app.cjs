// A small Node web service instrumented the usual way: OpenTelemetry's
// Node SDK with the OTLP (http/protobuf) trace exporter, OpenFeature with
// the OFREP provider and the OpenTelemetry span-event hook
// (@openfeature/open-telemetry-hooks), all from npm. Nothing in it is
// written for Rampart: the OFREP endpoint and flag key, and the exporter
// (OTEL_EXPORTER_OTLP_TRACES_*), come from the environment.
//
// GET /search?user=ID is a server span; the flag is evaluated inside it
// (the hook adds feature_flag.evaluation to it), and it fails (HTTP 500,
// span status ERROR) with the probability ERROR_RATES gives for the engine
// served. With LOAD_PER_SECOND set it calls itself at that rate, each call
// a new user. Prints "ready PORT"; stops when stdin closes.
const http = require('node:http');
const { NodeSDK } = require('@opentelemetry/sdk-node');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto');
const { BatchSpanProcessor } = require('@opentelemetry/sdk-trace');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const api = require('@opentelemetry/api');
const { OpenFeature } = require('@openfeature/server-sdk');
const { OFREPProvider } = require('@openfeature/ofrep-provider');
const { SpanEventHook, SpanHook } = require('@openfeature/open-telemetry-hooks');

const sdk = new NodeSDK({
  resource: resourceFromAttributes({ 'service.name': 'search-api-node' }),
  spanProcessors: [new BatchSpanProcessor({ exporter: new OTLPTraceExporter(), scheduledDelayMillis: 200 })],
});
sdk.start();
const tracer = api.trace.getTracer('search-api');

const flagKey = process.env.FLAG_KEY;
OpenFeature.setProvider(
  new OFREPProvider({ baseUrl: process.env.OFREP_URL, headers: [['Authorization', `Bearer ${flagKey}`]] }),
);
// HOOK=span: the hook that records each evaluation as a child span instead.
OpenFeature.addHooks(process.env.HOOK === 'span' ? new SpanHook() : new SpanEventHook());
const flags = OpenFeature.getClient();
const errorRates = JSON.parse(process.env.ERROR_RATES || '{}');

const server = http.createServer((request, response) => {
  tracer.startActiveSpan('GET /search', { kind: api.SpanKind.SERVER }, async (span) => {
    const user = new URL(request.url, 'http://localhost').searchParams.get('user');
    const engine = await flags.getStringValue('search-engine', 'classic', { targetingKey: user });
    const failed = Math.random() < (errorRates[engine] || 0);
    const status = failed ? 500 : 200;
    span.setAttribute('http.response.status_code', status);
    if (failed) span.setStatus({ code: api.SpanStatusCode.ERROR });
    response.writeHead(status).end(engine);
    span.end();
  });
});

server.listen(0, '127.0.0.1', () => {
  const port = server.address().port;
  const perSecond = Number(process.env.LOAD_PER_SECOND || 0);
  if (perSecond > 0) {
    setInterval(() => {
      const user = `u${Math.floor(Math.random() * 1e12)}`;
      http.get(`http://127.0.0.1:${port}/search?user=${user}`, (r) => r.resume()).on('error', () => {});
    }, 1000 / perSecond);
  }
  console.log(`ready ${port}`);
});

process.stdin.on('data', () => {});
process.stdin.on('end', () => sdk.shutdown().finally(() => process.exit(0)));
