import { ORDER_MEMBER_LUA } from './order-member.lua.js';

/**
 * BEGIN: decides whether an entry may run now, and if so counts the attempt.
 *
 * KEYS[1] stream
 * KEYS[2] the group's attempts hash
 * KEYS[3] the group's order index
 * KEYS[4] the entry's handled marker (only when it has an idempotency key)
 * ARGV[1] group; ARGV[2] entry id; ARGV[3] the entry's key ('' for none); ARGV[4] lease token;
 * ARGV[5] lease ms; ARGV[6] max attempts; ARGV[7] isolation threshold (0: off)
 *
 * Returns [decision, attempts started including this one]:
 * - 'wait': an earlier entry with the same key is still unacknowledged in this group;
 * - 'done': an entry with the same idempotency key already succeeded in this group;
 * - 'busy': one with that idempotency key is running elsewhere right now (its lease is alive);
 * - 'exhausted': it already started max-attempts times (the last runs never finished: crashes);
 * - 'isolate': it started at least threshold times without finishing: run it alone (see SuspectQueue);
 * - 'run': go; the idempotency lease (if any) is now this entry's.
 * Attempts are counted when a handler really starts, not per delivery: an instance that crashes
 * does not use up an attempt of every entry it merely held. A key's head that is no longer pending
 * (acknowledged by hand, or lost to an unguarded XTRIM) would block its key forever: it is dropped.
 */
export const BEGIN_SCRIPT = `${ORDER_MEMBER_LUA}
local key = ARGV[3]
if key ~= '' then
  while true do
    local head = keyHead(KEYS[3], key)
    if not head or head == ARGV[2] then break end
    local pending = redis.call('XPENDING', KEYS[1], ARGV[1], head, head, 1)
    if #pending > 0 then return {'wait', 0} end
    redis.call('ZREM', KEYS[3], orderMember(key, head))
  end
end
if #KEYS >= 4 then
  local value = redis.call('GET', KEYS[4])
  if value == 'done' then return {'done', 0} end
  if value and value ~= ARGV[4] then return {'busy', 0} end
end
local started = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
if started >= tonumber(ARGV[6]) then return {'exhausted', started} end
if tonumber(ARGV[7]) > 0 and started >= tonumber(ARGV[7]) then return {'isolate', started} end
redis.call('HSET', KEYS[2], ARGV[2], started + 1)
if #KEYS >= 4 then redis.call('SET', KEYS[4], ARGV[4], 'PX', ARGV[5]) end
return {'run', started + 1}
`;
