-- wrk script: GET a random tracked link per request; count 302s exactly.
-- usage: [PACE_MS=N] wrk ... -s bench/clicks.lua URL -- PATHS_FILE
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  paths = {}
  for line in io.lines(args[1]) do
    paths[#paths + 1] = line
  end
  n302 = 0
  other = 0
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

-- A browser's user agent: an empty one is judged a bot's, and bot clicks make no webhooks.
local headers = { ["User-Agent"] = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Safari/605.1.15" }

-- PACE_MS=N: each connection waits N ms after an answer before its next request (a steady rate).
local pace = tonumber(os.getenv("PACE_MS") or "")
if pace and pace > 0 then
  function delay()
    return pace
  end
end

function request()
  return wrk.format("GET", paths[math.random(#paths)], headers)
end

function response(status, headers, body)
  if status == 302 then n302 = n302 + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local t302, tother = 0, 0
  for _, t in ipairs(threads) do
    t302 = t302 + t:get("n302")
    tother = tother + t:get("other")
  end
  io.write(string.format("RESULT rps=%.0f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f n302=%d other=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, t302, tother,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
