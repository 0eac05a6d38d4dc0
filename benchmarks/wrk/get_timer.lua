-- get_timer.lua: wrk script that reads timers with GET /timer/<id>.
--
-- The ids are read from the file named by the first script argument (one
-- uuid a line, created beforehand); each wrk thread cycles through them
-- from its own starting point.
--
--   wrk -t2 -c64 -d15s -s benchmarks/wrk/get_timer.lua \
--       http://127.0.0.1:8000 -- ids.txt

local ids = {}
local index = 0
local thread_no = 0

setup = function(thread)
    thread_no = thread_no + 1
    thread:set("offset", thread_no * 7919)
end

init = function(args)
    local path = args[1] or "ids.txt"
    for line in io.lines(path) do
        if #line > 0 then
            ids[#ids + 1] = line
        end
    end
    if #ids == 0 then
        error("no ids in " .. path)
    end
    index = (tonumber(offset) or 0) % #ids
end

request = function()
    index = index % #ids + 1
    return wrk.format("GET", "/timer/" .. ids[index])
end
