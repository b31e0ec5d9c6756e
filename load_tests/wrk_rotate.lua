-- wrk script for http_load.py: each thread sends the requests of a file in turn, from its
-- own starting line, and done() prints the run as one JSON line.
--   wrk -s wrk_rotate.lua URL -- FILE GET
--   wrk -s wrk_rotate.lua URL -- FILE POST PATH
-- FILE holds one request a line: a path and query (GET) or a JSON body (POST to PATH).

local threads = {}
local requests = {}
local count = 0
local at = 0

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local file, method, path = args[1], args[2], args[3]
  local headers = {}
  if method == "POST" then
    headers["Content-Type"] = "application/json"
  end
  for line in io.lines(file) do
    count = count + 1
    if method == "POST" then
      requests[count] = wrk.format("POST", path, headers, line)
    else
      requests[count] = wrk.format("GET", line, headers)
    end
  end
  if count == 0 then
    error("no requests in " .. file)
  end
  at = (id * 7919) % count
end

function request()
  at = at % count + 1
  return requests[at]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "p999_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9)))
end
