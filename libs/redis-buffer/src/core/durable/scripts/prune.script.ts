/**
 * PRUNE: removes from a group the consumer names this instance's earlier processes left behind,
 * once they hold nothing (each process consumes under a name of its own, `<instanceId>@<suffix>`:
 * see `DurableConsumer`).
 *
 * KEYS[1] stream
 * ARGV[1] group; ARGV[2] this process's consumer name; ARGV[3] the instance id; ARGV[4] the idle
 * time (ms) a name must have reached
 *
 * Deletes (XGROUP DELCONSUMER) every consumer of the group named `<instanceId>@…` or exactly
 * `<instanceId>` (the name versions before per-process names used), other than ARGV[2], with no
 * pending entry and idle for ARGV[4] ms or more. The check and the deletion are one step: a name
 * that reads an entry between them cannot lose it (DELCONSUMER drops a consumer's pending entries
 * from the group, which would then never run). A live process under the same instance id (a frozen
 * one, thawed) can lose its name this way only while it holds nothing (Redis 7.0 counts a name's
 * idle time from its last read or claim that got entries); its next read makes the name again.
 * Returns how many were deleted.
 */
export const PRUNE_SCRIPT = `
local pruned = 0
local prefix = ARGV[3] .. '@'
local idle = tonumber(ARGV[4])
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local fields = {}
  for i = 1, #consumer, 2 do fields[consumer[i]] = consumer[i + 1] end
  local name = fields['name']
  if name ~= ARGV[2] and (name == ARGV[3] or string.sub(name, 1, #prefix) == prefix) and fields['pending'] == 0 and fields['idle'] >= idle then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    pruned = pruned + 1
  end
end
return pruned
`;
