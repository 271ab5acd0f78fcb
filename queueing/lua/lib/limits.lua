-- lib/limits.lua: the attempt limits, the proof-of-work mark and the day rule, shared by reserve.lua and
-- enter.lua.
-- Pasted into a script where it says `--#include lib/limits.lua` (wartiket/redis_client.py, _source):
-- Redis scripts cannot load other scripts, and one copy keeps both paths' rules the same.

-- Fixed-window counter. Returns the milliseconds until the window ends when over the limit, else false.
-- A limit of 0 turns it off.
local function over_limit(key, limit, window)
  if limit <= 0 then return false end
  local count = redis.call('INCR', key)
  if count == 1 then redis.call('PEXPIRE', key, window) end
  if count <= limit then return false end
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then
    redis.call('PEXPIRE', key, window)
    ttl = window
  end
  return ttl
end

-- One ticket per person per war day: the other ticket ("slot id|code") this person holds that day, else
-- false. A day entry naming this very slot without a holder is stale (e.g. left by a rebuild): ignored.
local function other_ticket_today(day_key, person, slot_id)
  local other = redis.call('HGET', day_key, person)
  if other and string.sub(other, 1, string.len(slot_id) + 1) ~= slot_id .. '|' then return other end
  return false
end

-- Each proof of work buys one attempt: true when this one was already spent (a replay). A ttl of 0 means
-- the slot needs no proof, and nothing is written.
local function proof_spent(key, ttl)
  ttl = tonumber(ttl or '') or 0
  return ttl > 0 and not redis.call('SET', key, '1', 'NX', 'PX', ttl)
end
