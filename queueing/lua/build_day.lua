--[[ build_day.lua: rebuild one war day's Redis state from PostgreSQL's tickets, atomically.

The day is the unit: the one-ticket-per-person hash spans every slot of the day, so rebuilding one slot
alone would forget the day entries of the others (a buyer holding 14:00 could then take 10:00 too).
PostgreSQL is the truth; this replaces whatever Redis had for the day's slots in one step.

KEYS 1 day (person -> "slot id|code"), then per slot in ARGV order: slot, free, holders, waitlist
ARGV 1 number of slots, then per slot:
       slot id, quota, opens_ms, closes_ms,
       draw ("" first come first served; draw ms while PostgreSQL has no draw result; "done" once it has),
       number of holding tickets,
       then per ticket: user id, person, number, code, reserved_ms, one_per_day ("1"/"0"),
       then the number of waiting-list entries, then per entry: person, position
Returns {now_ms, slots built}
]]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

redis.call('DEL', KEYS[1])
local a = 2
for s = 1, tonumber(ARGV[1]) do
  local slot_key, free_key, holders_key, wait_key = KEYS[4 * s - 2], KEYS[4 * s - 1], KEYS[4 * s], KEYS[4 * s + 1]
  local slot_id, quota, opens, closes, draw = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local count = tonumber(ARGV[a + 5])
  a = a + 6
  -- Versions must keep growing across a Redis restart (live pages drop anything older than what they
  -- saw), so a rebuilt slot starts from the clock rather than from 0. (Formatted with %.0f when stored:
  -- Lua would otherwise print a 16-digit number in exponent form.)
  local version = math.max(tonumber(redis.call('HGET', slot_key, 'ver') or 0) + 1, now * 1000)
  redis.call('DEL', slot_key, free_key, holders_key, wait_key)
  local held, highest = {}, 0
  for _ = 1, count do
    local uid, person, number, code, ts, per_day = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
    a = a + 6
    redis.call('HSET', holders_key, uid, number .. '|' .. code .. '|' .. ts .. '|1|' .. person)
    if per_day == '1' then redis.call('HSET', KEYS[1], person, slot_id .. '|' .. code) end
    held[number] = true
    if number > highest then highest = number end
  end
  for n = 1, highest - 1 do
    if not held[n] then redis.call('ZADD', free_key, n, n) end
  end
  local waiting = tonumber(ARGV[a])
  a = a + 1
  for _ = 1, waiting do
    redis.call('HSET', wait_key, ARGV[a], ARGV[a + 1])
    a = a + 2
  end
  redis.call('HSET', slot_key, 'quota', quota, 'opens', opens, 'closes', closes,
    'next', highest + 1, 'sold', count, 'ver', string.format('%.0f', version))
  if draw ~= '' then redis.call('HSET', slot_key, 'draw', draw) end
end
return {now, tonumber(ARGV[1])}
