// A small Node web service instrumented the usual way: OpenTelemetry's
// metrics SDK with the OTLP (http/protobuf) exporter, OpenFeature with the
// OFREP provider, all from npm. Each request records the HTTP server
// request histogram of OpenTelemetry's semantic conventions, with the flag
// it evaluated and the variant it served as attributes. Nothing in it is
// written for Rampart: the OFREP endpoint and flag key, and the exporter
// (OTEL_EXPORTER_OTLP_METRICS_*), come from the environment.
//
// GET /search?user=ID fails (HTTP 500) with the probability ERROR_RATES
// gives for the engine served, and answers late (SLOW: {"engine":
// [probability, seconds]}) for the engine served. With LOAD_PER_SECOND set it calls itself at
// that rate, each call a new user. Prints "ready PORT"; stops when stdin
// closes.
const http = require('node:http');
const { MeterProvider, PeriodicExportingMetricReader } = require('@opentelemetry/sdk-metrics');
const { OTLPMetricExporter } = require('@opentelemetry/exporter-metrics-otlp-proto');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { OpenFeature } = require('@openfeature/server-sdk');
const { OFREPProvider } = require('@openfeature/ofrep-provider');

const meterProvider = new MeterProvider({
  resource: resourceFromAttributes({ 'service.name': 'search-api-node' }),
  readers: [
    new PeriodicExportingMetricReader({
      exporter: new OTLPMetricExporter(),
      exportIntervalMillis: Number(process.env.OTEL_METRIC_EXPORT_INTERVAL || 60000),
    }),
  ],
});
// The semantic conventions' advised buckets, as OpenTelemetry's HTTP
// instrumentations record them.
const duration = meterProvider.getMeter('search-api').createHistogram('http.server.request.duration', {
  unit: 's',
  advice: { explicitBucketBoundaries: [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10] },
});

const flagKey = process.env.FLAG_KEY;
OpenFeature.setProvider(
  new OFREPProvider({ baseUrl: process.env.OFREP_URL, headers: [['Authorization', `Bearer ${flagKey}`]] }),
);
const flags = OpenFeature.getClient();
const errorRates = JSON.parse(process.env.ERROR_RATES || '{}');
const slow = JSON.parse(process.env.SLOW || '{}');

const server = http.createServer(async (request, response) => {
  const started = process.hrtime.bigint();
  const user = new URL(request.url, 'http://localhost').searchParams.get('user');
  const details = await flags.getStringDetails('search-engine', 'classic', { targetingKey: user });
  const failed = Math.random() < (errorRates[details.value] || 0);
  const [slowShare, slowSeconds] = slow[details.value] || [0, 0];
  if (Math.random() < slowShare) await new Promise((resolve) => setTimeout(resolve, slowSeconds * 1000));
  const status = failed ? 500 : 200;
  response.writeHead(status).end(details.value);
  const attributes = {
    'http.request.method': 'GET',
    'http.route': '/search',
    'http.response.status_code': status,
    'feature_flag.key': 'search-engine',
    'feature_flag.result.variant': details.variant,
  };
  if (failed) attributes['error.type'] = '500';
  duration.record(Number(process.hrtime.bigint() - started) / 1e9, attributes);
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
process.stdin.on('end', () => meterProvider.shutdown().finally(() => process.exit(0)));
