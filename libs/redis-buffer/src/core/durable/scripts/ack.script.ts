import { ORDER_MEMBER_LUA } from './order-member.lua.js';
import { OWNER_LUA } from './owner.lua.js';

/**
 * ACK: an entry's handler succeeded (or the entry needs no run in this group).
 *
 * KEYS[1] stream
 * KEYS[2] the group's attempts hash
 * KEYS[3] the group's order index
 * KEYS[4] the entry's handled marker (only when it has an idempotency key and is to be marked done)
 * ARGV[1] group; ARGV[2] entry id; ARGV[3] the entry's key ('' for none); ARGV[4] window ms;
 * ARGV[5] the group's turn channel; ARGV[6] consumer
 *
 * Acknowledges, remembers the idempotency key as done, forgets the attempts, and lets the next
 * entry with the same key go: when one waits, its key is published on the group's turn channel, so
 * the instance holding it starts it now instead of at its next poll (pub/sub may lose that message;
 * the poll remains). Only the entry's owner may: a late acknowledgement from a consumer that lost
 * the entry changes nothing (above all, it does not release the key's turn under the claimer).
 * Returns 1 (acknowledged), -1 (refused: another consumer owns it) or 0 (refused: not pending,
 * already acknowledged).
 */
export const ACK_SCRIPT = `${ORDER_MEMBER_LUA}${OWNER_LUA}
local owner = ownerOf(KEYS[1], ARGV[1], ARGV[2], ARGV[6])
if owner == 'lost' then return -1 end
if owner == 'gone' then return 0 end
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
if #KEYS >= 4 then redis.call('SET', KEYS[4], 'done', 'PX', ARGV[4]) end
releaseTurn(KEYS[3], ARGV[3], ARGV[2], ARGV[5])
return acked
`;
