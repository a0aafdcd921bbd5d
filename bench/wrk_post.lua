-- wrk: POST the file named by the BENCH_BODY environment variable as JSON; with BENCH_TOKEN
-- set, as the caller identified by that token (Authorization: Bearer, scenario AV).
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
local token = os.getenv("BENCH_TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
