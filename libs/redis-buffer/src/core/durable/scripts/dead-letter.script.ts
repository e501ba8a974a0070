import { ORDER_MEMBER_LUA } from './order-member.lua.js';
import { OWNER_LUA } from './owner.lua.js';

/**
 * DEAD_LETTER: gives up on an entry.
 *
 * KEYS[1] stream
 * KEYS[2] the group's dead-letter stream
 * KEYS[3] the group's attempts hash
 * KEYS[4] the group's order index
 * KEYS[5] the entry's handled marker (only when it has an idempotency key)
 * ARGV[1] group; ARGV[2] entry id; ARGV[3] the entry's key ('' for none); ARGV[4] lease token;
 * ARGV[5] the group's turn channel; ARGV[6] consumer; ARGV[7..] the dead letter's field-value list
 *
 * Only the entry's owner may (a consumer that lost it must not dead-letter what the claimer runs):
 * adds the dead letter, acknowledges the entry, frees its idempotency lease and its key's turn.
 * Returns the dead letter's id, or false.
 */
export const DEAD_LETTER_SCRIPT = `${ORDER_MEMBER_LUA}${OWNER_LUA}
if ownerOf(KEYS[1], ARGV[1], ARGV[2], ARGV[6]) ~= 'mine' then return false end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 7))
if #KEYS >= 5 and redis.call('GET', KEYS[5]) == ARGV[4] then redis.call('DEL', KEYS[5]) end
releaseTurn(KEYS[4], ARGV[3], ARGV[2], ARGV[5])
return id
`;
