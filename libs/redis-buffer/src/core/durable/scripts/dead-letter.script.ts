import { ORDER_MEMBER_LUA } from './order-member.lua.js';

/**
 * DEAD_LETTER: gives up on an entry.
 *
 * KEYS[1] stream
 * KEYS[2] the group's dead-letter stream
 * KEYS[3] the group's attempts hash
 * KEYS[4] the group's order index
 * KEYS[5] the entry's handled marker (only when it has an idempotency key)
 * ARGV[1] group; ARGV[2] entry id; ARGV[3] the entry's key ('' for none); ARGV[4] lease token;
 * ARGV[5] the group's turn channel; ARGV[6..] the dead letter's field-value list
 *
 * Adds the dead letter only if the entry was still pending (so two instances giving up on it at
 * once add one), acknowledges it, frees its idempotency lease and its key's turn.
 * Returns the dead letter's id, or false.
 */
export const DEAD_LETTER_SCRIPT = `${ORDER_MEMBER_LUA}
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
if acked == 0 then return false end
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 6))
if #KEYS >= 5 and redis.call('GET', KEYS[5]) == ARGV[4] then redis.call('DEL', KEYS[5]) end
local key = ARGV[3]
if key ~= '' then
  redis.call('ZREM', KEYS[4], orderMember(key, ARGV[2]))
  if keyHead(KEYS[4], key) then redis.call('PUBLISH', ARGV[5], key) end
end
return id
`;
