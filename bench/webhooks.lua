-- wrk script: cycle through pre-signed webhook requests, each thread its own slice.
-- Request file lines: webhook-id \t webhook-timestamp \t webhook-signature \t body
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local path, nthreads = args[1], tonumber(args[2])
  requests = {}
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == id then
      local mid, ts, sig, body = line:match("([^\t]+)\t([^\t]+)\t([^\t]+)\t(.*)")
      local headers = {
        ["Content-Type"] = "application/json",
        ["webhook-id"] = mid,
        ["webhook-timestamp"] = ts,
        ["webhook-signature"] = sig,
      }
      table.insert(requests, wrk.format("POST", "/webhooks/simulator", headers, body))
    end
    i = i + 1
  end
  n = 0
end

function request()
  n = n + 1
  return requests[((n - 1) % #requests) + 1]
end
