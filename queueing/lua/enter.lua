--[[ enter.lua: record one person's entry in a draw slot's entry window, atomically, on Redis' clock.

Draw mode (queueing/services/draws.py): during the entry window an attempt is an entry, not a
reservation. This script decides whether it is one; PostgreSQL then records it (DrawEntry) before the
buyer hears 202. From the draw time on it answers ``after`` and the caller runs reserve.lua instead
(which answers ``not_ready`` until the draw's result is in Redis: ``draw`` field of the slot hash).

KEYS (one war day's hash tag)
  1 slot      HASH  quota, opens, closes, draw (draw ms while undrawn, "done" once the result is applied), pending
  2 day       HASH  person -> "slot id|code" (one ticket per person per war day)
  3 stats     HASH  outcome -> count (war room)
  4 rl_user   STRING  5 rl_ip STRING  (the same fixed-window counters as reserve.lua)
  6 entrants  SET   persons who entered (war-room count; PostgreSQL holds the entries)
  7 pow       STRING this attempt's proof-of-work replay mark (as reserve.lua's KEYS[9])
ARGV
  1 slot id   2 bypass time gate ("1"/"0")   3 one per day ("1"/"0")
  4 user limit   5 ip limit   6 window ms   7 person key   8 entry window length ms (before ``opens``)
  9 proof-of-work mark TTL ms (0: the slot needs no proof)
Returns {outcome, now_ms, ...}
  fcfs                     (Redis does not know this slot as a draw slot: reserve.lua decides)
  after                    (the draw time has come: reserve.lua decides)
  not_ready                (slot keys missing or an edit pending)
  rate_limited retry_after_ms
  challenge_invalid        (this proof of work was already used)
  too_early    entry_opens_ms
  one_per_day  "slot id|code" of the other ticket
  entered      draw_ms, entrants
]]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local slot_id, person = ARGV[1], ARGV[7]
local bypass, one_per_day = ARGV[2] == '1', ARGV[3] == '1'
local window = tonumber(ARGV[6])

local function done(outcome, a, b)
  redis.call('HINCRBY', KEYS[3], outcome, 1)
  return {outcome, now, a, b}
end

local meta = redis.call('HMGET', KEYS[1], 'quota', 'opens', 'draw', 'pending')
if not meta[1] or meta[4] then return done('not_ready') end
if not meta[3] then return {'fcfs', now} end
-- Counted by reserve.lua, which decides from here on.
if meta[3] == 'done' or now >= tonumber(meta[3]) then return {'after', now} end

--#include lib/limits.lua

local wait = over_limit(KEYS[5], tonumber(ARGV[5]), window) or over_limit(KEYS[4], tonumber(ARGV[4]), window)
if wait then return done('rate_limited', wait) end

-- As in reserve.lua: each proof buys one attempt. Only here, past the "after" answer above, so a proof
-- handed on to reserve.lua after the draw time is still unspent there.
if proof_spent(KEYS[7], ARGV[9]) then return done('challenge_invalid') end

local entry_opens = tonumber(meta[2]) - tonumber(ARGV[8])
if not bypass and now < entry_opens then return done('too_early', entry_opens) end

if one_per_day then
  local other = other_ticket_today(KEYS[2], person, slot_id)
  if other then return done('one_per_day', other) end
end

redis.call('SADD', KEYS[6], person)
return done('entered', tonumber(meta[3]), redis.call('SCARD', KEYS[6]))
