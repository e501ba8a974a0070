/**
 * PUBLISH: appends an entry, once per idempotency key within the window.
 *
 * KEYS[1] stream
 * KEYS[2] published marker of the idempotency key (only when the entry has one)
 * KEYS[3..] with `signingKey` rotating: the key's markers under the other keys, checked (one found is written again as it is)
 * ARGV[1] window ms; ARGV[2] maxLength for a stream no consumer group reads ('0': no trim);
 * ARGV[3] '~' or '=' (approximate or exact trim); ARGV[4..] the entry's field-value list
 *
 * Returns [id, 1 if an entry with that idempotency key already existed (its id), else 0].
 * The marker is checked and set in the same step as the XADD, so two publishers racing with one
 * key add one entry. A marker found is written again as it is (same value, same expiry): a
 * duplicate publish then writes on its own connection, so a WAIT after it (`durable.replicas`)
 * covers the first publish's entry, which precedes that write in the master's replication stream. A stream without any consumer group (a topic read only through wildcard
 * bindings, or not read at all) has no consumer to trim it, so the publish trims it by length:
 * with no group, no entry is pending or unread by anyone.
 */
export const PUBLISH_SCRIPT = `
for i = 2, #KEYS do
  local existing = redis.call('GET', KEYS[i])
  if existing then
    redis.call('SET', KEYS[i], existing, 'KEEPTTL')
    return {existing, 1}
  end
end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 4))
if #KEYS >= 2 then redis.call('SET', KEYS[2], id, 'PX', ARGV[1]) end
local maxLength = tonumber(ARGV[2])
if maxLength > 0 and #redis.call('XINFO', 'GROUPS', KEYS[1]) == 0 then
  redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[3], maxLength)
end
return {id, 0}
`;
