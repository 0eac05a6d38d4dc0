-- post_timer.lua: wrk script that creates timers with POST /timer.
--
-- Every request creates a timer due in 1 to 24 hours (so nothing fires
-- during a benchmark) whose webhook URL points at a dummy 127.0.0.1
-- receiver. The body varies (delay and url path) so no layer can cache.
--
--   wrk -t2 -c64 -d15s -s benchmarks/wrk/post_timer.lua \
--       http://127.0.0.1:8000

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local counter = 0

request = function()
    counter = counter + 1
    local body = string.format(
        '{"url":"http://127.0.0.1:9/hook/%d","hours":%d,"minutes":%d,' ..
        '"seconds":%d}',
        counter, 1 + counter % 24, counter % 60, counter % 59)
    return wrk.format("POST", "/timer", nil, body)
end
