/**
 * REPLAY: moves a dead letter back to the main stream, for its group only.
 *
 * KEYS[1] stream
 * KEYS[2] the group's dead-letter stream
 * ARGV[1] dead letter id; ARGV[2] group
 *
 * Adds the entry (the dead letter's original fields, routing from an earlier replay dropped, `group`
 * set to this group) and deletes the dead letter in one step, and only if the dead letter is still
 * there: two operators replaying it at once add one entry. The `dead.*` fields come first (six
 * pairs, docs/protocol.md), so the original fields start at the 13th.
 * Returns the new entry's id, or false when there is no such dead letter.
 */
export const REPLAY_SCRIPT = `
local found = redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[1])
if #found == 0 then return false end
local fields = found[1][2]
local replay = {}
for i = 13, #fields - 1, 2 do
  if fields[i] ~= 'group' then
    table.insert(replay, fields[i])
    table.insert(replay, fields[i + 1])
  end
end
table.insert(replay, 'group')
table.insert(replay, ARGV[2])
local id = redis.call('XADD', KEYS[1], '*', unpack(replay))
redis.call('XDEL', KEYS[2], ARGV[1])
return id
`;
