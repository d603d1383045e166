-- wrk script of scripts/bench-http.sh: one-event POSTs to the ingest route,
-- each with a request_id unique to this run (RUN) and thread; token from TOKEN.
-- With COUNT=1 it also counts the answers by status and prints them at the end
-- ("status <code> <n>" lines), for the exactly-once check.
local token = os.getenv("TOKEN") or ""
local run = os.getenv("RUN") or "run"
local count = os.getenv("COUNT") == "1"
local threads = {}
local n = 0
tid = 0 -- global: setup() sets it in each thread
statuses = {} -- global: done() reads each thread's copy

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  prefix = string.format("%s-t%d-", run, tid)
end

request = function()
  n = n + 1
  local body = string.format(
    '{"endpoint":"/api/clients/%d","response_time_ms":%d,"status_code":200,"service":"bench","request_id":"%s%d"}',
    n % 50, 20 + n % 300, prefix, n)
  return wrk.format("POST", "/api/admin/system/metrics",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, body)
end

if count then
  response = function(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  if not count then return end
  local total = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for code, c in pairs(s) do total[code] = (total[code] or 0) + c end
  end
  for code, c in pairs(total) do io.write(string.format("status %d %d\n", code, c)) end
end
