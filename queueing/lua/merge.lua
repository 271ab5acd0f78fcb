--[[ merge.lua: teach a live slot the holding tickets PostgreSQL has and Redis lacks, without a rebuild.

reconcile's repair runs during live wars: rebuilding would forget reservations assigned in Redis and not
yet committed (buyers mid-request). Merging only adds: each ticket becomes a committed holder, its
number leaves the free set, ``next`` moves past it, and ``sold`` is recounted from the holders.

KEYS 1 slot  2 free  3 holders  4 day
ARGV 1 slot id, then per ticket: user id, person, number, code, reserved_ms, one_per_day ("1"/"0")
Returns {outcome, now_ms, ...}
  merged     tickets added, version
  not_ready
]]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local slot_id = ARGV[1]

local next_number = tonumber(redis.call('HGET', KEYS[1], 'next'))
if not next_number then return {'not_ready', now} end

local added = 0
for i = 2, #ARGV, 6 do
  local uid, person, number, code, ts, per_day = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local holder = redis.call('HGET', KEYS[3], uid)
  local held_code = holder and string.match(holder, '^%d+|([^|]+)|')
  if held_code ~= code then
    if held_code then
      -- The account's other, uncommitted reservation here can never commit (PostgreSQL holds one ticket
      -- per account and slot): its number goes back rather than leaking.
      local old = tonumber(string.match(holder, '^(%d+)|'))
      redis.call('ZADD', KEYS[2], old, old)
    end
    redis.call('HSET', KEYS[3], uid, number .. '|' .. code .. '|' .. ts .. '|1|' .. person)
    added = added + 1
  end
  redis.call('ZREM', KEYS[2], number)
  if number >= next_number then
    -- Numbers between the old ``next`` and this one were never handed out: they are free.
    for n = next_number, number - 1 do redis.call('ZADD', KEYS[2], n, n) end
    next_number = number + 1
  end
  if per_day == '1' then redis.call('HSET', KEYS[4], person, slot_id .. '|' .. code) end
end
redis.call('HSET', KEYS[1], 'next', next_number, 'sold', redis.call('HLEN', KEYS[3]))
local version = redis.call('HINCRBY', KEYS[1], 'ver', 1)
return {'merged', now, added, version}
