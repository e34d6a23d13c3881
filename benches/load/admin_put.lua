-- wrk script: durable admin writes, PUT of 100 API-owned flags in turn,
-- each with new content (so every request is a new version).
local token = os.getenv("RAMPART_BENCH_TOKEN")
local counter = 0

request = function()
  counter = counter + 1
  local key = "bench-" .. (counter % 100)
  local body = string.format('{"state":"ENABLED","variants":{"a":%d,"b":0},"defaultVariant":"a"}', counter)
  return wrk.format("PUT", "/admin/v1/environments/default/flags/" .. key,
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, body)
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT requests_per_second=%.0f p50_us=%d p90_us=%d p99_us=%d max_us=%d errors=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
