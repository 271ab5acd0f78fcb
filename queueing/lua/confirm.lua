--[[ confirm.lua: mark a holder's ticket as committed to PostgreSQL.

A holder still marked 0 when its owner retries means the process died between Redis and Postgres:
the service then writes the missing row (idempotently) before answering.
KEYS 1 holders   ARGV 1 user id  2 ticket code
Returns 1 when marked, 0 when the holder is gone or holds another code.
]]

local holder = redis.call('HGET', KEYS[1], ARGV[1])
if not holder then return 0 end
local number, code, ts, person = string.match(holder, '^(%d+)|([^|]+)|(%d+)|%d|(.*)$')
if code ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], number .. '|' .. code .. '|' .. ts .. '|1|' .. person)
return 1
