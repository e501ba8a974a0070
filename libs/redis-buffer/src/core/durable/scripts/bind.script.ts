/**
 * BIND: adds a wildcard binding to the namespace's registry, or removes one, and bumps the
 * registry's version, in one step.
 *
 * KEYS[1] the bindings set; KEYS[2] the bindings version (one hash tag: one Redis Cluster slot)
 * ARGV[1] 'add' or 'remove'; ARGV[2] the wildcard pattern
 *
 * Returns [1 if the set changed else 0, the version after]. A publisher that reads the version
 * after this returned sees the change (docs/protocol.md, "Durable topics"). The version is bumped
 * first and every time: a script is not rolled back when a later command fails (an ACL without
 * INCR), and a set changed without its version bumped would never be read again by publishers
 * that cached it. Bumping when nothing changed only makes publishers read the set once more.
 */
export const BIND_SCRIPT = `
local version = redis.call('INCR', KEYS[2])
local changed
if ARGV[1] == 'add' then
  changed = redis.call('SADD', KEYS[1], ARGV[2])
else
  changed = redis.call('SREM', KEYS[1], ARGV[2])
end
return {changed, version}
`;
