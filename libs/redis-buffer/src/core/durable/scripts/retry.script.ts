/**
 * RETRY: takes an entry back for its next attempt, only if this consumer still owns it.
 *
 * KEYS[1] stream
 * ARGV[1] group; ARGV[2] consumer; ARGV[3] entry id
 *
 * Another instance may have claimed it meanwhile: then it is theirs. XCLAIM also counts the
 * delivery in the group's PEL, for XPENDING readers. Returns 1, or false.
 */
export const RETRY_SCRIPT = `
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #pending == 0 or pending[1][2] ~= ARGV[2] then return false end
local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3])
if #claimed == 0 or not claimed[1] then return false end
return 1
`;
