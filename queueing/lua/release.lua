--[[ release.lua: take a holder's number back (cancellation, or a reservation PostgreSQL refused).

KEYS 1 slot  2 free  3 holders  4 day  5 journal        (same keys as reserve.lua)
ARGV 1 user id  2 ticket code  3 slot id  4 reason  5 person key  6 journal cap
     7 "1": the number goes back to the free set; "0": it does not (PostgreSQL says another ticket
       holds it, so handing it out again would only fail again: it stays counted as sold until
       reconcile adopts that ticket)
Returns {outcome, now_ms, ...}
  released    remaining, version, number
  not_holder                         (this user holds no ticket with that code here: nothing written)
  not_ready
]]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local uid, code, slot_id, person = ARGV[1], ARGV[2], ARGV[3], ARGV[5]
local give_back = ARGV[7] ~= '0'

local meta = redis.call('HMGET', KEYS[1], 'quota', 'sold')
if not meta[1] then return {'not_ready', now} end

local holder = redis.call('HGET', KEYS[3], uid)
if not holder then return {'not_holder', now} end
local number, held_code = string.match(holder, '^(%d+)|([^|]+)|')
-- Only the exact ticket is released: a stale cancel must not free a newer reservation's seat.
if held_code ~= code then return {'not_holder', now} end

redis.call('HDEL', KEYS[3], uid)
local sold = tonumber(meta[2])
if give_back then
  redis.call('ZADD', KEYS[2], number, number)
  sold = redis.call('HINCRBY', KEYS[1], 'sold', -1)
end
if redis.call('HGET', KEYS[4], person) == slot_id .. '|' .. code then
  redis.call('HDEL', KEYS[4], person)
end
local version = redis.call('HINCRBY', KEYS[1], 'ver', 1)
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[6], '*', 'op', 'release', 'slot', slot_id, 'user', uid,
  'person', person, 'number', number, 'code', code, 'reason', ARGV[4], 'ts', now)
return {'released', now, tonumber(meta[1]) - sold, version, tonumber(number)}
