import { ORDER_MEMBER_LUA } from './order-member.lua.js';
import { OWNER_LUA } from './owner.lua.js';

/**
 * BEGIN: decides whether an entry may run now, and if so counts the attempt.
 *
 * KEYS[1] stream
 * KEYS[2] the group's attempts hash
 * KEYS[3] the group's order index
 * KEYS[4] the entry's handled marker (only when it has an idempotency key)
 * KEYS[5..] with `signingKey` rotating: its handled markers under the other keys ('done' is honoured, never written)
 * ARGV[1] group; ARGV[2] entry id; ARGV[3] the entry's key ('' for none); ARGV[4] lease token;
 * ARGV[5] lease ms (also the claim idle time); ARGV[6] max attempts; ARGV[7] isolation threshold
 * (0: off); ARGV[8] consumer; ARGV[9] the attempt of a grant this consumer never acted on
 * ('' if none: see EntryRunner's stale grants), reused rather than counted again
 *
 * Returns [decision, attempts started including this one, then for 'claimed' the head's id and fields]:
 * - 'lost' / 'gone': the caller no longer owns the entry (claimed by another consumer while this
 *   one was frozen or cut off / already acknowledged): it must let it go without running it;
 * - 'wait': an earlier entry with the same key is still unacknowledged in this group;
 * - 'claimed': that earlier entry (the key's head) was idle for claimIdle, its consumer gone: the
 *   caller now owns it (XCLAIM) and runs it first. So a waiting entry never stalls its key behind
 *   a dead consumer, however full the caller is and whatever XAUTOCLAIM's cursor has passed;
 * - 'done': an entry with the same idempotency key already succeeded in this group;
 * - 'busy': one with that idempotency key is running elsewhere right now (its lease is alive);
 * - 'exhausted': it already started max-attempts times (the last runs never finished: crashes);
 * - 'isolate': it started at least threshold times without finishing: run it alone (see SuspectQueue);
 * - 'run': go; the idempotency lease (if any) is now this entry's, and the entry's idle time is
 *   reset (JUSTID: no delivery counted), so the lease runs claimIdle from this step.
 * Attempts are counted when a handler really starts, not per delivery: an instance that crashes
 * does not use up an attempt of every entry it merely held. A key's head that is no longer pending
 * (acknowledged by hand, or lost to an unguarded XTRIM) would block its key forever: it is dropped.
 */
export const BEGIN_SCRIPT = `${ORDER_MEMBER_LUA}${OWNER_LUA}
local owner = ownerOf(KEYS[1], ARGV[1], ARGV[2], ARGV[8])
if owner ~= 'mine' then return {owner, 0} end
local key = ARGV[3]
if key ~= '' then
  while true do
    local head = keyHead(KEYS[3], key)
    if not head or head == ARGV[2] then break end
    local pending = redis.call('XPENDING', KEYS[1], ARGV[1], head, head, 1)
    if #pending > 0 then
      if pending[1][3] >= tonumber(ARGV[5]) then
        local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[8], ARGV[5], head)
        if #claimed > 0 and claimed[1] then return {'claimed', 0, head, claimed[1][2]} end
      end
      return {'wait', 0}
    end
    redis.call('ZREM', KEYS[3], orderMember(key, head))
  end
end
for i = 5, #KEYS do
  if redis.call('GET', KEYS[i]) == 'done' then return {'done', 0} end
end
if #KEYS >= 4 then
  local value = redis.call('GET', KEYS[4])
  if value == 'done' then return {'done', 0} end
  if value and value ~= ARGV[4] then return {'busy', 0} end
end
local started = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
if ARGV[9] ~= '' and started == tonumber(ARGV[9]) then started = started - 1 end
if started >= tonumber(ARGV[6]) then return {'exhausted', started} end
if tonumber(ARGV[7]) > 0 and started >= tonumber(ARGV[7]) then return {'isolate', started} end
redis.call('HSET', KEYS[2], ARGV[2], started + 1)
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[8], 0, ARGV[2], 'IDLE', 0, 'JUSTID')
if #KEYS >= 4 then redis.call('SET', KEYS[4], ARGV[4], 'PX', ARGV[5]) end
return {'run', started + 1}
`;
