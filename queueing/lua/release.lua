--[[ release.lua: give a held number back (cancellation, or a reservation whose Postgres write failed).

KEYS 1 slot  2 free  3 holders  4 day  5 journal        (same keys as reserve.lua)
ARGV 1 user id  2 ticket code  3 slot id  4 reason
Returns {outcome, now_ms, ...}
  released    remaining, version, number
  not_holder                         (this user holds no ticket with that code here: nothing written)
  not_ready
]]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local uid, code, slot_id = ARGV[1], ARGV[2], ARGV[3]

local meta = redis.call('HMGET', KEYS[1], 'quota', 'sold')
if not meta[1] then return {'not_ready', now} end

local holder = redis.call('HGET', KEYS[3], uid)
if not holder then return {'not_holder', now} end
local number, held_code = string.match(holder, '^(%d+)|([^|]+)|')
-- Only the exact ticket is released: a stale cancel must not free a newer reservation's seat.
if held_code ~= code then return {'not_holder', now} end

redis.call('HDEL', KEYS[3], uid)
redis.call('ZADD', KEYS[2], number, number)
local sold = redis.call('HINCRBY', KEYS[1], 'sold', -1)
if redis.call('HGET', KEYS[4], uid) == slot_id .. '|' .. code then
  redis.call('HDEL', KEYS[4], uid)
end
local version = redis.call('HINCRBY', KEYS[1], 'ver', 1)
redis.call('XADD', KEYS[5], '*', 'op', 'release', 'slot', slot_id, 'user', uid,
  'number', number, 'code', code, 'reason', ARGV[4], 'ts', now)
return {'released', now, tonumber(meta[1]) - sold, version, tonumber(number)}
