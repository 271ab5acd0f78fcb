--[[ promote.lua: a drawn slot's cancelled seat goes to the first eligible entrant of the waiting list.

PostgreSQL already committed both the cancellation and the promoted entrant's ticket, with the freed
number (queueing/services/draws.py ``promote``). This swaps the holder in one step, so the number is
never free in between for a first-come-first-served attempt to take.

KEYS 1 slot  2 free  3 holders  4 day  5 waitlist
ARGV 1 old user id  2 old code  3 slot id  4 old person
     5 new user id  6 new person  7 new code  8 reserved_ms  9 one_per_day ("1"/"0")  10 number
Returns {outcome, now_ms, ...}
  promoted   version, remaining
  not_ready             (no state, or the draw's result is not applied yet: applying it reads PostgreSQL)
]]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local slot_id = ARGV[3]

local meta = redis.call('HMGET', KEYS[1], 'quota', 'draw')
if not meta[1] or meta[2] ~= 'done' then return {'not_ready', now} end

local holder = redis.call('HGET', KEYS[3], ARGV[1])
if holder and string.match(holder, '^%d+|([^|]+)|') == ARGV[2] then
  redis.call('HDEL', KEYS[3], ARGV[1])
end
if redis.call('HGET', KEYS[4], ARGV[4]) == slot_id .. '|' .. ARGV[2] then
  redis.call('HDEL', KEYS[4], ARGV[4])
end
redis.call('ZREM', KEYS[2], ARGV[10])
redis.call('HSET', KEYS[3], ARGV[5], ARGV[10] .. '|' .. ARGV[7] .. '|' .. ARGV[8] .. '|1|' .. ARGV[6])
if ARGV[9] == '1' then redis.call('HSET', KEYS[4], ARGV[6], slot_id .. '|' .. ARGV[7]) end
redis.call('HDEL', KEYS[5], ARGV[6])
local sold = redis.call('HLEN', KEYS[3])
redis.call('HSET', KEYS[1], 'sold', sold)
local version = redis.call('HINCRBY', KEYS[1], 'ver', 1)
return {'promoted', now, version, tonumber(meta[1]) - sold}
