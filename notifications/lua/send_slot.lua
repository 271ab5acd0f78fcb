-- send_slot.lua: may we send one Telegram message to this chat now? (GCRA, one round trip, atomic)
--
-- KEYS[1]  {tg}:rl:global        TAT (theoretical arrival time, ms) of the bot-wide limit
-- KEYS[2]  {tg}:rl:chat:<chat>   TAT (ms) of this chat's limit; also set by a 429's retry_after
-- ARGV[1]  global emission interval, ms (1000 / messages per second)
-- ARGV[2]  global burst tolerance, ms (how far ahead of now the global TAT may run)
-- ARGV[3]  per-chat interval, ms (no burst: one message per interval)
-- ARGV[4]  now in ms, or "" to use Redis TIME (tests pass a fixed clock to count, not time)
--
-- Returns 0 when the send may go ahead (both TATs advanced), else the milliseconds to wait
-- (nothing written: a refused caller consumes no capacity).

local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local chat_interval = tonumber(ARGV[3])
local now
if ARGV[4] ~= "" then
  now = tonumber(ARGV[4])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local global_tat = math.max(tonumber(redis.call('GET', KEYS[1]) or 0), now)
local chat_tat = math.max(tonumber(redis.call('GET', KEYS[2]) or 0), now)

local wait = 0
if global_tat - now > burst then
  wait = global_tat - now - burst
end
if chat_tat - now > wait then
  wait = chat_tat - now
end
if wait > 0 then
  -- Integer replies truncate: round up so a wait of 0.4 ms is never read as "go ahead".
  return math.ceil(wait)
end

-- The global TAT may be fractional (1000/30 ms); it is stored as a string and read back exactly enough.
redis.call('SET', KEYS[1], tostring(global_tat + interval), 'PX', math.ceil(burst + interval) + 1000)
redis.call('SET', KEYS[2], tostring(now + chat_interval), 'PX', math.ceil(chat_interval) + 1000)
return 0
