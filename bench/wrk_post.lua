-- wrk: POST the file named by the BENCH_BODY environment variable as JSON.
local path = os.getenv("BENCH_BODY")
local body = '{"clientId":"widget-42"}'
if path and path ~= "" then
  local f = assert(io.open(path, "rb"))
  body = f:read("*a")
  f:close()
end
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
