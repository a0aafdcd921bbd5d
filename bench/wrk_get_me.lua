-- wrk: GET the mock upstream's user directly (measures the upstream's own latency for B).
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer mock-token-4f2a9c"
