--[[ draw_apply.lua: put a committed draw's result into Redis, atomically and at most once.

PostgreSQL committed the winners' tickets first (queueing/services/draws.py); this replaces the slot's
holders with them, points the day's person hash at them, sets the counters, writes the waiting list
and marks the slot drawn (``draw`` = "done"), after which reserve.lua serves the slot again (leftover
seats first come, first served). A slot already marked drawn is left alone, so a rerun is harmless.

KEYS 1 slot  2 free  3 holders  4 day  5 waitlist (person -> waiting-list position)
ARGV 1 slot id  2 number of tickets, then per ticket: user id, person, number, code, reserved_ms,
     one_per_day ("1"/"0"); then the number of waiting entrants, then per entrant: person, position
Returns {outcome, now_ms, ...}
  applied   holders written, version
  already
  not_ready                 (the slot's keys are missing: self-heal rebuilds it, drawn, from PostgreSQL)
]]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local slot_id = ARGV[1]

local meta = redis.call('HMGET', KEYS[1], 'quota', 'draw')
if not meta[1] then return {'not_ready', now} end
if meta[2] == 'done' then return {'already', now} end

redis.call('DEL', KEYS[2], KEYS[3], KEYS[5])
local a, held, highest = 3, {}, 0
local count = tonumber(ARGV[2])
for _ = 1, count do
  local uid, person, number, code, ts, per_day = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
  a = a + 6
  redis.call('HSET', KEYS[3], uid, number .. '|' .. code .. '|' .. ts .. '|1|' .. person)
  if per_day == '1' then redis.call('HSET', KEYS[4], person, slot_id .. '|' .. code) end
  held[number] = true
  if number > highest then highest = number end
end
for n = 1, highest - 1 do
  if not held[n] then redis.call('ZADD', KEYS[2], n, n) end
end
local waiting = tonumber(ARGV[a])
a = a + 1
for _ = 1, waiting do
  redis.call('HSET', KEYS[5], ARGV[a], ARGV[a + 1])
  a = a + 2
end
redis.call('HSET', KEYS[1], 'next', highest + 1, 'sold', count, 'draw', 'done')
local version = redis.call('HINCRBY', KEYS[1], 'ver', 1)
return {'applied', now, count, version}
