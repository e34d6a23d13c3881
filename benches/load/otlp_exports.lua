-- wrk script: OTLP/HTTP trace exports (protobuf), cycling over the bodies
-- benches/load/otlp_exports.py wrote to $RAMPART_BENCH_EXPORTS, with the
-- reporter key in $RAMPART_BENCH_REPORTER_KEY.
local bodies = {}
local directory = os.getenv("RAMPART_BENCH_EXPORTS")
local count = tonumber(os.getenv("RAMPART_BENCH_EXPORT_COUNT") or "64")
for i = 0, count - 1 do
  local file = assert(io.open(directory .. "/export-" .. i .. ".pb", "rb"))
  bodies[#bodies + 1] = file:read("*a")
  file:close()
end
local headers = {
  ["Content-Type"] = "application/x-protobuf",
  ["Authorization"] = "Bearer " .. os.getenv("RAMPART_BENCH_REPORTER_KEY"),
}
local counter = 0
-- RAMPART_BENCH_OTLP_DELAY_MS: each connection waits that long between
-- exports (the server takes 200 requests a second per reporter key,
-- limits.outcomeReportsPerSecond: beyond that exports get 429).
local pause = tonumber(os.getenv("RAMPART_BENCH_OTLP_DELAY_MS") or "")
if pause then
  delay = function() return pause end
end

request = function()
  counter = counter + 1
  return wrk.format("POST", "/v1/traces", headers, bodies[(counter % #bodies) + 1])
end

done = function(summary, latency, requests)
  io.write(string.format("OTLP exports_per_second=%.1f spans_per_second=%.0f p99_us=%d errors=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6), 512 * summary.requests / (summary.duration / 1e6),
    latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
