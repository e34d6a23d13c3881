-- wrk script: outcome reports for a ramped flag, as SDKs send them.
request = function()
  local body = '{"outcomes":[{"flag":"one-page-checkout","variant":"on","ok":3,"error":0},' ..
               '{"flag":"one-page-checkout","variant":"off","ok":5,"error":1}]}'
  return wrk.format("POST", "/v1/outcomes", {["Content-Type"] = "application/json"}, body)
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT requests_per_second=%.0f p50_us=%d p90_us=%d p99_us=%d max_us=%d errors=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
