-- wrk script for benches/intake.sh: POSTs a JSON event with a unique
-- X-Event-Id (the flow's dedupe key) per request, and prints the figures.
local threads = {}
local counter = 0
local prefix = "t"

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

-- `wrk ... -- NAME` prefixes the keys with NAME (several wrk processes at
-- once, as benches/replicas.sh runs them, must not send the same keys).
function init(args)
  prefix = (args[1] or "") .. "t" .. tostring(tid) .. "-" .. tostring(os.time()) .. "-"
end

local body = '{"type":"order.created","order":{"id":12345,"total":42.5,"lines":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}]}}'

function request()
  counter = counter + 1
  return wrk.format("POST", "/events", {
    ["Host"] = wrk.host .. ":" .. wrk.port,
    ["Content-Type"] = "application/json",
    ["X-Event-Id"] = prefix .. counter,
  }, body)
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format("RESULT requests=%d seconds=%.2f rps=%.0f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f non2xx=%d errors=%d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    e.status, e.connect + e.read + e.write + e.timeout))
end
