--[[ reserve.lua: hand one queue number to one buyer, atomically, in one round trip.

The only clock that decides is Redis TIME: app servers' clocks never take part.

KEYS (all share the war-day hash tag {w:YYYY-MM-DD}, so the script runs unchanged on Redis Cluster)
  1 slot       HASH  quota, opens (ms), closes (ms), next (next never-issued number), sold, ver,
                     pending (present while a staff edit is between PostgreSQL and Redis: refuse),
                     draw (draw slots: draw ms until the draw's result is applied, then "done": refuse
                     until then, so no number is handed out first come, first served before the draw)
  2 free       ZSET  numbers freed by cancellation, score = number (reissued lowest first)
  3 holders    HASH  user id -> "number|code|reserved_ms|committed|person"
  4 day        HASH  person -> "slot id|code" (one ticket per person per war day)
  5 journal    STREAM every reservation and release, for reconcile after a crash (capped)
  6 stats      HASH  outcome -> count (war room)
  7 rl_user    STRING attempts by this user in the current window
  8 rl_ip      STRING attempts from this client address in the current window
  9 pow        STRING the attempt's proof of work once accepted ({w:D}:pow:<challenge signature>)
  10 waitlist  HASH  draw slots: person -> waiting-list place, once drawn (empty for first-come slots)
ARGV
  1 user id   2 new ticket code   3 slot id   4 bypass time gate ("1"/"0")   5 one per day ("1"/"0")
  6 user limit   7 ip limit   8 window ms   (a limit of 0 turns that limit off)
  9 person key ("nik:<NIK>" or "user:<id>": the day rule is per person, not per account)
  10 journal cap (approximate MAXLEN of the day's journal stream)
  11 proof TTL ms: keep KEYS[9] this long (until its challenge expires); empty or 0: no proof on this slot
     (the solution itself was verified in-process before the script: HMACs, no Redis)
Returns {outcome, now_ms, ...}
  rate_limited     retry_after_ms
  challenge_invalid                            (this proof of work was already used: a replay)
  not_ready                                    (slot keys missing or an edit pending: self-heal rebuilds)
  too_early        opens_ms
  already_reserved holder ("number|code|reserved_ms|committed|person"), remaining
  closed           closes_ms
  one_per_day      "slot id|code" of the other ticket
  sold_out
  not_drawn        waiting-list place          (a draw slot's entrant the draw did not seat; counted as sold_out)
  drift                                        (counters contradict each other: refuse, never guess)
  reserved         number, code, remaining, version

Rate-limit and war-room counters are bookkeeping and count every attempt, and a proof of work is spent
by any attempt past the rate limit; the reservation state (numbers, holders, journal) is written only
after every check has passed.
]]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local uid, code, slot_id, person = ARGV[1], ARGV[2], ARGV[3], ARGV[9]
local bypass, one_per_day = ARGV[4] == '1', ARGV[5] == '1'
local window = tonumber(ARGV[8])

local function done(outcome, a, b, c, d)
  redis.call('HINCRBY', KEYS[6], outcome, 1)
  return {outcome, now, a, b, c, d}
end

--#include lib/limits.lua

local wait = over_limit(KEYS[8], tonumber(ARGV[7]), window) or over_limit(KEYS[7], tonumber(ARGV[6]), window)
if wait then return done('rate_limited', wait) end

-- Each proof of work buys one attempt, whatever its outcome: a replay is refused before anything else.
if proof_spent(KEYS[9], ARGV[11]) then return done('challenge_invalid') end

local meta = redis.call('HMGET', KEYS[1], 'quota', 'opens', 'closes', 'next', 'sold', 'pending', 'draw')
-- A pending edit means PostgreSQL may already hold other times than these: never gate on them.
if not meta[1] or meta[6] then return done('not_ready') end
-- A draw slot whose draw is not in Redis yet: the draw assigns the numbers (services/draws.py).
if meta[7] and meta[7] ~= 'done' then return done('not_ready') end
local quota, opens, closes = tonumber(meta[1]), tonumber(meta[2]), tonumber(meta[3])
local next_number, sold = tonumber(meta[4]), tonumber(meta[5])

if not bypass and now < opens then return done('too_early', opens) end

local holder = redis.call('HGET', KEYS[3], uid)
if holder then return done('already_reserved', holder, quota - sold) end

if not bypass and now >= closes then return done('closed', closes) end

if one_per_day then
  local other = other_ticket_today(KEYS[4], person, slot_id)
  if other then return done('one_per_day', other) end
end

if sold >= quota then
  -- In the same round trip: an entrant the draw put on the waiting list hears their place.
  local place = redis.call('HGET', KEYS[10], person)
  if place then
    redis.call('HINCRBY', KEYS[6], 'sold_out', 1)
    return {'not_drawn', now, place}
  end
  return done('sold_out')
end

local lowest_free = redis.call('ZRANGE', KEYS[2], 0, 0)
local number = next_number
if #lowest_free > 0 then number = tonumber(lowest_free[1]) end
if number < 1 or number > quota then return done('drift') end

-- Every check passed: from here on, write.
if #lowest_free > 0 then
  redis.call('ZREM', KEYS[2], lowest_free[1])
else
  redis.call('HINCRBY', KEYS[1], 'next', 1)
end
redis.call('HINCRBY', KEYS[1], 'sold', 1)
local version = redis.call('HINCRBY', KEYS[1], 'ver', 1)
redis.call('HSET', KEYS[3], uid, number .. '|' .. code .. '|' .. now .. '|0|' .. person)
redis.call('HSET', KEYS[4], person, slot_id .. '|' .. code)
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[10], '*', 'op', 'reserve', 'slot', slot_id, 'user', uid,
  'person', person, 'number', number, 'code', code, 'ts', now)
return done('reserved', number, code, quota - sold - 1, version)
