import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { RedisPermissionError } from '../errors/redis-permission.error.js';
import type { DurableKeys } from './durable-keys.js';

/**
 * What a Redis ACL user needs for durable messaging, checked at start-up, and the translation of
 * Redis's permission refusals into `RedisPermissionError`. The rules are documented in
 * docs/reliability.md ("Durable messaging under an ACL user"); keep the two in step.
 */
export type DurableSide = 'publisher' | 'consumer';

/** What every connection of the library sends: connecting (AUTH, HELLO, ready check INFO), naming itself, PING, closing. */
const CONNECTION_COMMANDS = ['auth', 'hello', 'info', 'ping', 'client|setname', 'quit'] as const;

/**
 * Commands each side sends, directly or from its scripts. ioredis runs a script with EVALSHA, and
 * with EVAL when Redis does not have it (after a restart or SCRIPT FLUSH): both are needed.
 * Publisher: `publish` (GET, XADD, SET; XINFO GROUPS and XTRIM for a stream no group reads; GET and
 * SMEMBERS of the bindings registry), `deadLetters` (XRANGE), `replayDeadLetter` (XRANGE, XADD,
 * XDEL), `trim` (EXISTS, XLEN, XRANGE, XINFO GROUPS, XPENDING, XTRIM), `unbind` (SREM, INCR), the
 * settings check (HGETALL), and WAIT with `durable.replicas`. Consumer: also SADD and INCR
 * (registering its wildcard bindings), XINFO CONSUMERS and XGROUP DELCONSUMER (removing the
 * consumer names its instance's earlier processes left, once they hold nothing).
 */
export const DURABLE_COMMANDS: Readonly<Record<DurableSide, readonly string[]>> = {
  publisher: ['evalsha', 'eval', 'get', 'set', 'xadd', 'xrange', 'xdel', 'hgetall', 'exists', 'xlen', 'xinfo|groups', 'xpending', 'xtrim', 'smembers', 'srem', 'incr', 'wait'],
  consumer: [
    'evalsha', 'eval', 'xgroup|create', 'xgroup|delconsumer', 'xreadgroup', 'xread', 'xautoclaim', 'xclaim', 'xack', 'xpending', 'xinfo|groups', 'xinfo|consumers', 'xadd', 'xrange', 'xrevrange',
    'xlen', 'xtrim', 'exists', 'zadd', 'zrem', 'zrangebylex', 'hget', 'hset', 'hgetall', 'hdel', 'get', 'set', 'del', 'pexpire', 'publish', 'subscribe', 'sadd', 'incr',
  ],
};

/** The least-privilege ACL rule of one side of durable messaging in `namespace`. */
export function durableAclRule(namespace: string, side: DurableSide): string {
  const channels = side === 'consumer' ? ` resetchannels &${namespace}:durable:*` : '';
  return `ACL SETUSER <user> on ><password> resetkeys ~${namespace}:durable:*${channels} -@all ${[...DURABLE_COMMANDS[side], ...CONNECTION_COMMANDS].map((command) => `+${command}`).join(' ')}`;
}

/** What Redis refused, read from its error (Redis 7.0 wording, for plain commands and from inside scripts). */
export type PermissionDenial = { readonly kind: 'command'; readonly commands: readonly string[] } | { readonly kind: 'key' } | { readonly kind: 'channel' };

export function permissionDenial(error: unknown): PermissionDenial | undefined {
  if (!(error instanceof Error)) return undefined;
  const message = error.message;
  const named = /no permissions to run the '([^']+)' command/.exec(message);
  if (named) return { kind: 'command', commands: [named[1]!.toLowerCase()] };
  if (/no permissions to access one of the keys|can't access at least one of the keys/.test(message)) return { kind: 'key' };
  if (/no permissions to access one of the channels|can't publish to the channel/.test(message)) return { kind: 'channel' };
  if (/can't run this command|^NOPERM\b/.test(message)) return { kind: 'command', commands: [] };
  return undefined;
}

/**
 * The `RedisPermissionError` for a refusal met by durable messaging (undefined if `error` is not
 * one): `sent` is the command sent (for a script, which one), `target` the key it was sent for.
 */
export function durablePermissionError(error: unknown, namespace: string, side: DurableSide, sent: string, target: string): RedisPermissionError | undefined {
  const denial = permissionDenial(error);
  if (denial === undefined) return undefined;
  return new RedisPermissionError(refused(denial, sent), [target], { cause: error, fix: fixFor(denial, namespace, side) });
}

function refused(denial: PermissionDenial, sent: string): string {
  if (denial.kind !== 'command') return sent;
  // From inside a script Redis 7.0 does not say which command it refused.
  return denial.commands.length === 0 ? `a command of ${sent}` : denial.commands.map((command) => command.toUpperCase()).join(', ');
}

function fixFor(denial: PermissionDenial, namespace: string, side: DurableSide): string {
  const grant =
    denial.kind === 'key'
      ? `~${namespace}:durable:*`
      : denial.kind === 'channel'
        ? `&${namespace}:durable:*`
        : denial.commands.map((command) => `+${command}`).join(' ');
  const first = grant === '' ? 'grant the Redis user the command it lacks (from inside a script, Redis does not say which; the start-up check names it)' : `grant the Redis user ${grant} (ACL SETUSER <user> ${grant})`;
  return `${first}. Everything a durable ${side} needs: ${durableAclRule(namespace, side)} (docs/reliability.md, "Durable messaging under an ACL user").`;
}

/**
 * Tries every command a side needs, on the real keys, without changing anything: each is sent with
 * arguments Redis refuses after its permission check (an XADD with id 0-0, a SET with NX and XX, an
 * invalid stream id…) or is a read. Redis checks a script's commands when they run, so the script
 * runs each under `redis.pcall` and returns those refused: [command, error, command, error…].
 *
 * KEYS: stream, dead letters, attempts, order, probe key (never written). ARGV: side, group,
 * consumer, turn channel, '1' when the consumer trims.
 */
const PROBE_LUA = `
local denied = {}
local function try(...)
  local result = redis.pcall(...)
  if type(result) == 'table' and result.err and (string.find(result.err, "can't", 1, true) or string.find(result.err, 'NOPERM', 1, true)) then
    local name = string.lower((...))
    if name == 'xinfo' or name == 'xgroup' then name = name .. '|' .. string.lower((select(2, ...))) end
    table.insert(denied, name)
    table.insert(denied, result.err)
  end
end
local stream, dead, attempts, order, probe = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group, consumer, channel = ARGV[2], ARGV[3], ARGV[4]
try('GET', probe)
try('SET', probe, 'x', 'NX', 'XX')
try('XADD', stream, '0-0', 'probe', 'x')
if ARGV[1] == 'consumer' then
  try('XREADGROUP', 'GROUP', group, consumer, 'COUNT', 1, 'STREAMS', stream, 'not-an-id')
  try('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  try('ZADD', order, 'NX', 'XX', 0, 'probe')
  try('ZRANGEBYLEX', order, '-', '+', 'LIMIT', 0, 1)
  try('ZREM', order, 'probe')
  try('HSET', attempts, 'probe', 'x', 'odd')
  try('HGET', attempts, 'probe')
  try('HDEL', attempts, 'probe')
  try('XPENDING', stream, group, '-', '+', 1)
  try('XCLAIM', stream, group, consumer, 0, 'not-an-id')
  try('XACK', stream, group, 'not-an-id')
  -- Pruning the names of this instance's earlier processes (the prune script): a name with a
  -- space is none of the library's, so nothing is deleted.
  try('XINFO', 'CONSUMERS', stream, group)
  try('XGROUP', 'DELCONSUMER', stream, group, consumer .. ' probe')
  try('XADD', dead, '0-0', 'probe', 'x')
  try('DEL', probe)
  try('PEXPIRE', probe, 1)
  try('PUBLISH', channel, '')
  if ARGV[5] == '1' then
    try('EXISTS', stream)
    try('XLEN', stream)
    try('XRANGE', stream, '-', '+', 'COUNT', 1)
    try('XINFO', 'GROUPS', stream)
    try('XTRIM', stream, 'MINID', 'not-an-id')
  end
end
return denied
`;
const PROBE_SHA = createHash('sha1').update(PROBE_LUA).digest('hex');

export interface PermissionProbe {
  readonly keys: DurableKeys;
  /** The consumer group (consumers only). */
  readonly group?: string;
}

/**
 * Fails with `RedisPermissionError`, naming what is missing and the rule to add, unless the
 * connection's Redis user may send everything `side` will send for these streams: EVAL and
 * EVALSHA, every command of its scripts, and (consumers) XAUTOCLAIM, XREAD, XINFO GROUPS and
 * XPENDING. XGROUP CREATE, HGETALL/HSET of the settings and SUBSCRIBE are checked by the start-up
 * itself (see `withPermissionCheck`).
 */
export async function checkDurablePermissions(connection: Redis, namespace: string, side: DurableSide, consumer: string, probes: readonly PermissionProbe[], trims: boolean): Promise<void> {
  for (const { keys, group = 'permission-probe' } of probes) {
    const args: Array<string | number> = [keys.stream, keys.deadLetters(group), keys.attempts(group), keys.order(group), keys.permissionProbe, side, group, consumer, keys.turnChannel(group), trims ? '1' : '0'];
    const denied = await withPermissionCheck(() => connection.eval(PROBE_LUA, 5, ...args) as Promise<string[]>, namespace, side, 'EVAL', keys.stream);
    if (denied.length > 0) throw probeRefusal(denied, namespace, side, keys);
    await withPermissionCheck(() => connection.evalsha(PROBE_SHA, 5, ...args), namespace, side, 'EVALSHA', keys.stream);
    if (side !== 'consumer') continue;
    const outside: Array<[string, () => Promise<unknown>]> = [
      ['XAUTOCLAIM', () => connection.xautoclaim(keys.stream, group, consumer, 0, '0-0', 'COUNT', 0)],
      ['XREAD', () => connection.xread('COUNT', 1, 'STREAMS', keys.stream, '$')],
      ['XINFO GROUPS', () => connection.xinfo('GROUPS', keys.stream)],
      ['XPENDING', () => connection.xpending(keys.stream, group)],
    ];
    for (const [sent, send] of outside) {
      // Refused for its arguments (COUNT 0, no such stream or group) after the permission check: allowed.
      await withPermissionCheck(() => send().catch((error: unknown) => (permissionDenial(error) === undefined ? undefined : Promise.reject(error))), namespace, side, sent, keys.stream);
    }
  }
}

/** The error for what the probe script found refused: a key or channel pattern if that was it, else every command refused. */
function probeRefusal(denied: readonly string[], namespace: string, side: DurableSide, keys: DurableKeys): RedisPermissionError {
  const refusals = [];
  for (let index = 0; index + 1 < denied.length; index += 2) refusals.push({ command: denied[index]!, cause: new Error(denied[index + 1]) });
  const pattern = refusals.find(({ cause }) => permissionDenial(cause)?.kind !== 'command');
  if (pattern !== undefined) {
    const denial = permissionDenial(pattern.cause)!;
    return new RedisPermissionError(pattern.command.toUpperCase(), [denial.kind === 'channel' ? keys.turnChannel('<group>') : keys.stream], { cause: pattern.cause, fix: fixFor(denial, namespace, side) });
  }
  const commands = [...new Set(refusals.map(({ command }) => command))];
  return new RedisPermissionError(commands.map((command) => command.toUpperCase()).join(', '), [keys.stream], { cause: refusals[0]!.cause, fix: fixFor({ kind: 'command', commands }, namespace, side) });
}

/** Runs `send`, turning a permission refusal into `RedisPermissionError`. */
export async function withPermissionCheck<T>(send: () => Promise<T>, namespace: string, side: DurableSide, sent: string, target: string): Promise<T> {
  try {
    return await send();
  } catch (error) {
    throw durablePermissionError(error, namespace, side, sent, target) ?? error;
  }
}
