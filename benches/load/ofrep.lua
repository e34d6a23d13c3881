-- wrk script: OFREP single-flag evaluations with a different targeting key
-- on every request, cycling over the example flags.
local flags = {"welcome-banner", "search-results-per-page", "discount-rate", "theme", "new-checkout"}
local counter = 0
-- With RAMPART_BENCH_SDK_KEY set (ofrep.sh passes it on), every request
-- carries the key, as SDKs send it.
local headers = {["Content-Type"] = "application/json"}
local key = os.getenv("RAMPART_BENCH_SDK_KEY")
if key and key ~= "" then headers["Authorization"] = "Bearer " .. key end

-- RAMPART_BENCH_DELAY_MS: each connection waits that long between
-- requests, for latency at a fixed rate below saturation (closed-loop
-- load otherwise measures queueing).
local pause = tonumber(os.getenv("RAMPART_BENCH_DELAY_MS") or "")
if pause then
  delay = function() return pause end
end

request = function()
  counter = counter + 1
  local flag = flags[(counter % #flags) + 1]
  local body = string.format(
    '{"context":{"targetingKey":"user-%d","email":"user%d@example.com","country":"NO","tier":"silver","appVersion":"2.%d.0"}}',
    counter, counter, counter % 7)
  return wrk.format("POST", "/ofrep/v1/evaluate/flags/" .. flag, headers, body)
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT requests_per_second=%.0f p50_us=%d p90_us=%d p99_us=%d max_us=%d errors=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
