--[[ set_quota.lua: change a live slot's quota and war times without losing a single reservation.

Raising the quota adds seats at once. Clears the ``pending`` mark a staff edit set before committing
to PostgreSQL (queueing/services/slots.py): from here on Redis gates on the new times. Lowering is refused while any issued number is above the new
quota (that buyer holds it); otherwise numbers above the highest one still held are forgotten.
KEYS 1 slot  2 free
ARGV 1 quota  2 opens_ms  3 closes_ms  4 draw ms for a draw slot, "" for first come first served (a
     draw slot stays refused by reserve.lua until its draw's result is applied: ``draw`` = "done")
Returns {outcome, now_ms, ...}
  ok            remaining, version
  below_issued  highest issued number still held
  not_ready
]]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local quota = tonumber(ARGV[1])

local meta = redis.call('HMGET', KEYS[1], 'next', 'sold')
if not meta[1] then return {'not_ready', now} end

-- The highest number still held: walk down from the last issued one past numbers sitting free.
local highest = tonumber(meta[1]) - 1
while highest > 0 and redis.call('ZSCORE', KEYS[2], highest) do
  highest = highest - 1
end
if quota < highest then return {'below_issued', now, highest} end

redis.call('ZREMRANGEBYSCORE', KEYS[2], '(' .. highest, '+inf')
redis.call('HSET', KEYS[1], 'quota', quota, 'opens', ARGV[2], 'closes', ARGV[3], 'next', highest + 1)
redis.call('HDEL', KEYS[1], 'pending')
if (ARGV[4] or '') == '' then
  redis.call('HDEL', KEYS[1], 'draw')
elseif redis.call('HGET', KEYS[1], 'draw') ~= 'done' then
  redis.call('HSET', KEYS[1], 'draw', ARGV[4])
end
local version = redis.call('HINCRBY', KEYS[1], 'ver', 1)
return {'ok', now, quota - tonumber(meta[2]), version}
