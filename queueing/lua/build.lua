--[[ build.lua: rebuild one slot's Redis state from PostgreSQL's tickets (sync_quota).

PostgreSQL is the truth; this replaces whatever Redis had for the slot in one atomic step.
KEYS 1 slot  2 free  3 holders  4 day
ARGV 1 quota  2 opens_ms  3 closes_ms  4 slot id, then per holding ticket: user id, number, code, reserved_ms
Returns {now_ms, remaining, version}
]]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local slot_id = ARGV[4]

-- Versions must keep growing across a Redis restart (live pages drop anything older than what they
-- saw), so a rebuilt slot starts from the clock rather than from 0. (Formatted with %.0f when stored:
-- Lua would otherwise print a 16-digit number in exponent form.)
local version = math.max(tonumber(redis.call('HGET', KEYS[1], 'ver') or 0) + 1, now * 1000)

-- Day entries that point at this slot are rebuilt from the tickets below.
local day = redis.call('HGETALL', KEYS[4])
local prefix = slot_id .. '|'
for i = 1, #day, 2 do
  if string.sub(day[i + 1], 1, string.len(prefix)) == prefix then
    redis.call('HDEL', KEYS[4], day[i])
  end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])

local held, highest, sold = {}, 0, 0
for i = 5, #ARGV, 4 do
  local uid, number, code, ts = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3]
  redis.call('HSET', KEYS[3], uid, number .. '|' .. code .. '|' .. ts .. '|1')
  redis.call('HSET', KEYS[4], uid, slot_id .. '|' .. code)
  held[number] = true
  if number > highest then highest = number end
  sold = sold + 1
end
for n = 1, highest - 1 do
  if not held[n] then redis.call('ZADD', KEYS[2], n, n) end
end
redis.call('HSET', KEYS[1], 'quota', ARGV[1], 'opens', ARGV[2], 'closes', ARGV[3],
  'next', highest + 1, 'sold', sold, 'ver', string.format('%.0f', version))
return {now, tonumber(ARGV[1]) - sold, version}
