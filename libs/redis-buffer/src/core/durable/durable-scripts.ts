import type { Redis } from 'ioredis';

/**
 * The Lua scripts of durable messaging. Each runs atomically on the server: that is what makes
 * "read and register for ordering", "acknowledge and remember the idempotency key" and "dead-letter
 * and acknowledge" single steps that a crash cannot cut in half. Keys of one pattern share a hash
 * tag (see DurableKeys); keys built inside a script stay in that slot.
 */

/** KEYS: stream, published-key or KEYS[1] for none. ARGV: window ms, then the entry's field-value list. Returns [id, 1 if it already existed]. */
const PUBLISH = `
if KEYS[2] ~= KEYS[1] then
  local existing = redis.call('GET', KEYS[2])
  if existing then return {existing, 1} end
end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
if KEYS[2] ~= KEYS[1] then redis.call('SET', KEYS[2], id, 'PX', ARGV[1]) end
return {id, 0}
`;

/**
 * KEYS: stream. ARGV: group, consumer, count, order-list prefix, attempts hash.
 * Reads new entries for the group (never blocks: blocking is not allowed in scripts) and, in the
 * same step:
 * - appends each entry with a "key" field to the group's order list for that key, so the lists
 *   hold ids in delivery order whatever instance read them;
 * - counts the first attempt of each entry with neither "key" nor "idem": nothing can hold those
 *   back, so the reader starts them at once without the BEGIN script (one round trip less per
 *   entry: median 7,100 handled/s became 10,400, over 9 and 12 three-second samples of a
 *   publisher and a consumer in one process on the shared 2-core machine). The
 *   consumer applies the same rule (see DurableConsumer.process); the first of a repeated field counts.
 * Returns [entries, id of the stream's last entry or '0-0'] (the second one tells the caller where
 * to block from).
 */
const FETCH = `
local read = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>')
local entries = {}
if read then
  entries = read[1][2]
  for _, entry in ipairs(entries) do
    local fields = entry[2]
    local key, idem
    for i = 1, #fields, 2 do
      if fields[i] == 'key' and not key then key = fields[i + 1]
      elseif fields[i] == 'idem' and not idem then idem = fields[i + 1] end
    end
    if key then redis.call('RPUSH', ARGV[4] .. key, entry[1]) end
    if not key and not idem then redis.call('HSET', ARGV[5], entry[1], 1) end
  end
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local lastId = '0-0'
if #last > 0 then lastId = last[1][1] end
return {entries, lastId}
`;

/**
 * KEYS: stream, handled-key or KEYS[1] for none, order-list or KEYS[1] for none, attempts hash. ARGV: group, entry id, lease
 * token, lease ms, max attempts, isolation threshold (0: off).
 * Decides whether an entry may run now, and if so counts the attempt:
 * - 'wait': an earlier entry with the same key is still unacknowledged in this group;
 * - 'done': an entry with the same idempotency key already succeeded in this group;
 * - 'busy': one with that key is running elsewhere right now (its lease is alive);
 * - 'exhausted': it already started max-attempts times (the last runs never finished: crashes);
 * - 'isolate': it started at least threshold times without finishing: run it alone (see the consumer);
 * - 'run': go; the idempotency lease (if any) is now this entry's.
 * Returns [decision, attempts started including this one]. Attempts are counted here, when a
 * handler really starts, not per delivery: an instance that crashes does not use up an attempt of
 * every entry it merely held. An order-list head that is no longer pending (acknowledged by hand,
 * or lost to an unguarded XTRIM) would block its key forever: it is dropped.
 */
const BEGIN = `
if KEYS[3] ~= KEYS[1] then
  while true do
    local head = redis.call('LINDEX', KEYS[3], 0)
    if not head or head == ARGV[2] then break end
    local pending = redis.call('XPENDING', KEYS[1], ARGV[1], head, head, 1)
    if #pending > 0 then return {'wait', 0} end
    redis.call('LPOP', KEYS[3])
  end
end
if KEYS[2] ~= KEYS[1] then
  local value = redis.call('GET', KEYS[2])
  if value == 'done' then return {'done', 0} end
  if value and value ~= ARGV[3] then return {'busy', 0} end
end
local started = tonumber(redis.call('HGET', KEYS[4], ARGV[2]) or '0')
if started >= tonumber(ARGV[5]) then return {'exhausted', started} end
if tonumber(ARGV[6]) > 0 and started >= tonumber(ARGV[6]) then return {'isolate', started} end
redis.call('HSET', KEYS[4], ARGV[2], started + 1)
if KEYS[2] ~= KEYS[1] then redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4]) end
return {'run', started + 1}
`;

/**
 * KEYS: stream, handled-key or KEYS[1] for none, order-list or KEYS[1] for none, attempts hash. ARGV: group, entry id, window ms
 * (or '' not to mark), turn channel. Acknowledges, remembers the idempotency key as done, forgets
 * the attempts, and lets the next entry with the same key go: when one waits, the order list's name
 * is published on the group's turn channel, so the instance holding it starts it now instead of at
 * its next poll (pub/sub may lose that message; the poll remains).
 */
const ACK = `
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[4], ARGV[2])
if KEYS[2] ~= KEYS[1] and ARGV[3] ~= '' then redis.call('SET', KEYS[2], 'done', 'PX', ARGV[3]) end
if KEYS[3] ~= KEYS[1] then
  redis.call('LREM', KEYS[3], 1, ARGV[2])
  if redis.call('LLEN', KEYS[3]) > 0 then redis.call('PUBLISH', ARGV[4], KEYS[3]) end
end
return acked
`;

/**
 * KEYS: stream, dead-letter stream, handled-key or KEYS[1] for none, order-list or KEYS[1] for none, attempts hash. ARGV: group, entry id,
 * lease token, turn channel, then the dead letter's field-value list. Adds the dead letter only if the entry was
 * still pending (so two instances giving up on it at once add one), acknowledges it, frees its
 * idempotency lease and its key's turn. Returns the dead letter's id, or false.
 */
const DEAD_LETTER = `
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[5], ARGV[2])
if acked == 0 then return false end
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 5))
if KEYS[3] ~= KEYS[1] and redis.call('GET', KEYS[3]) == ARGV[3] then redis.call('DEL', KEYS[3]) end
if KEYS[4] ~= KEYS[1] then
  redis.call('LREM', KEYS[4], 1, ARGV[2])
  if redis.call('LLEN', KEYS[4]) > 0 then redis.call('PUBLISH', ARGV[4], KEYS[4]) end
end
return id
`;

/**
 * KEYS: stream. ARGV: group, consumer, entry id.
 * Takes an entry back for its next attempt, only if this consumer still owns it (another instance
 * may have claimed it meanwhile): XCLAIM also counts the delivery in the group's PEL, for XPENDING
 * readers. Returns 1, or false.
 */
const RETRY = `
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #pending == 0 or pending[1][2] ~= ARGV[2] then return false end
local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3])
if #claimed == 0 or not claimed[1] then return false end
return 1
`;

/**
 * KEYS: stream. ARGV: group, consumer, idle ms to set, lease ms, then (entry id, handled-key or '',
 * lease token) triples. For each entry this consumer still owns: sets its idle time (0 to renew it,
 * `claimIdle` to release it at once to the group's other instances) without counting a delivery
 * (JUSTID), and renews (lease ms > 0) or frees (0) its idempotency lease. Returns the ids it no
 * longer owns.
 */
const TOUCH = `
local lost = {}
for i = 5, #ARGV, 3 do
  local id = ARGV[i]
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if #pending == 0 or pending[1][2] ~= ARGV[2] then
    table.insert(lost, id)
  else
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'IDLE', ARGV[3], 'JUSTID')
    local handled = ARGV[i + 1]
    if handled ~= '' and redis.call('GET', handled) == ARGV[i + 2] then
      if tonumber(ARGV[4]) > 0 then redis.call('PEXPIRE', handled, ARGV[4]) else redis.call('DEL', handled) end
    end
  end
end
return lost
`;

/**
 * KEYS: stream. ARGV: policy threshold id ('' for KEYS[1] for none), max length (0 for KEYS[1] for none), '~' or '=', scan limit.
 * Trims to the policy (older than the threshold id, or beyond max length) but never past the first
 * entry some consumer group still needs: its oldest pending entry, or the entry after the last one
 * delivered to it. Redis 7.0's XTRIM alone would delete pending entries without a word.
 * Returns [entries trimmed, threshold used or '', 1 if unacknowledged entries held it back].
 */
const TRIM = `
local function parse(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
local function after(id)
  local ms, seq = parse(id)
  return string.format('%.0f-%.0f', ms, seq + 1)
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, '', 0} end
local threshold = ARGV[1]
local maxLength = tonumber(ARGV[2])
if maxLength > 0 then
  local excess = redis.call('XLEN', KEYS[1]) - maxLength
  if excess > 0 then
    local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', math.min(excess, tonumber(ARGV[4])))
    local byLength = after(oldest[#oldest][1])
    if threshold == '' or less(threshold, byLength) then threshold = byLength end
  end
end
if threshold == '' then return {0, '', 0} end
local held = 0
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
for _, group in ipairs(groups) do
  local name, pendingCount, lastDelivered
  for i = 1, #group, 2 do
    if group[i] == 'name' then name = group[i + 1]
    elseif group[i] == 'pending' then pendingCount = group[i + 1]
    elseif group[i] == 'last-delivered-id' then lastDelivered = group[i + 1] end
  end
  local needed = after(lastDelivered)
  if pendingCount > 0 then
    local first = redis.call('XPENDING', KEYS[1], name, '-', '+', 1)
    if #first > 0 and less(first[1][1], needed) then needed = first[1][1] end
  end
  if less(needed, threshold) then
    threshold = needed
    held = 1
  end
end
local trimmed = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[3], threshold)
return {trimmed, threshold, held}
`;

type Key = string;

/** Typed calls to the scripts, sent with EVALSHA (ioredis falls back to EVAL after a restart). */
export interface DurableScripts {
  rbDurablePublish(stream: Key, published: Key, windowMs: number, ...fields: string[]): Promise<[string, number]>;
  rbDurableFetch(stream: Key, group: string, consumer: string, count: number, orderPrefix: string, attempts: Key): Promise<[Array<[string, string[]]>, string]>;
  rbDurableBegin(stream: Key, handled: Key, order: Key, attempts: Key, group: string, id: string, token: string, leaseMs: number, maxAttempts: number, isolateFrom: number): Promise<['wait' | 'done' | 'busy' | 'exhausted' | 'isolate' | 'run', number]>;
  rbDurableAck(stream: Key, handled: Key, order: Key, attempts: Key, group: string, id: string, windowMs: number | '', turnChannel: string): Promise<number>;
  rbDurableDeadLetter(stream: Key, dead: Key, handled: Key, order: Key, attempts: Key, group: string, id: string, token: string, turnChannel: string, ...fields: string[]): Promise<string | null>;
  rbDurableRetry(stream: Key, group: string, consumer: string, id: string): Promise<number | null>;
  rbDurableTouch(stream: Key, group: string, consumer: string, idleMs: number, leaseMs: number, ...triples: string[]): Promise<string[]>;
  rbDurableTrim(stream: Key, threshold: string, maxLength: number, mode: '~' | '=', scanLimit: number): Promise<[number, string, number]>;
}

const SCRIPTS: Record<keyof DurableScripts, { keys: number; lua: string }> = {
  rbDurablePublish: { keys: 2, lua: PUBLISH },
  rbDurableFetch: { keys: 1, lua: FETCH },
  rbDurableBegin: { keys: 4, lua: BEGIN },
  rbDurableAck: { keys: 4, lua: ACK },
  rbDurableDeadLetter: { keys: 5, lua: DEAD_LETTER },
  rbDurableRetry: { keys: 1, lua: RETRY },
  rbDurableTouch: { keys: 1, lua: TOUCH },
  rbDurableTrim: { keys: 1, lua: TRIM },
};

/**
 * Registers the scripts on a connection and returns it typed with them. An optional key its
 * caller leaves out ('') reaches the script as the stream's own key, which the scripts read as "none":
 * every key of a script call must hash to one slot on a Redis Cluster, and '' does not.
 */
export function withDurableScripts(redis: Redis): Redis & DurableScripts {
  const commands = redis as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  for (const [name, { keys, lua }] of Object.entries(SCRIPTS)) {
    if (name in redis) continue;
    redis.defineCommand(name, { numberOfKeys: keys, lua });
    const call = commands[name]!.bind(redis);
    commands[name] = (...args: unknown[]) => call(...args.map((arg, index) => (index > 0 && index < keys && arg === '' ? args[0] : arg)));
  }
  return redis as Redis & DurableScripts;
}
