/**
 * BIND: adds a wildcard binding to the namespace's registry, or removes one, bumping the registry's
 * version when the set changed, in one step.
 *
 * KEYS[1] the bindings set; KEYS[2] the bindings version (one hash tag: one Redis Cluster slot)
 * ARGV[1] 'add' or 'remove'; ARGV[2] the wildcard pattern
 *
 * Returns [1 if the set changed else 0, the version after]. A publisher that reads the version
 * after this returned sees the change (docs/protocol.md, "Durable topics").
 */
export const BIND_SCRIPT = `
local changed
if ARGV[1] == 'add' then
  changed = redis.call('SADD', KEYS[1], ARGV[2])
else
  changed = redis.call('SREM', KEYS[1], ARGV[2])
end
local version
if changed == 1 then version = redis.call('INCR', KEYS[2]) else version = tonumber(redis.call('GET', KEYS[2]) or '0') end
return {changed, version}
`;
