-- wrk: GET a simple connector with a path parameter and a query override.
wrk.method = "GET"
wrk.headers["X-Path-Params"] = "item_id=itm_042"
