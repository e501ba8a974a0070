import type { Redis } from 'ioredis';
import { ACK_SCRIPT } from './scripts/ack.script.js';
import { BEGIN_SCRIPT } from './scripts/begin.script.js';
import { BIND_SCRIPT } from './scripts/bind.script.js';
import { DEAD_LETTER_SCRIPT } from './scripts/dead-letter.script.js';
import { FETCH_SCRIPT } from './scripts/fetch.script.js';
import { PRUNE_SCRIPT } from './scripts/prune.script.js';
import { PUBLISH_SCRIPT } from './scripts/publish.script.js';
import { REPLAY_SCRIPT } from './scripts/replay.script.js';
import { RETRY_SCRIPT } from './scripts/retry.script.js';
import { TOUCH_SCRIPT } from './scripts/touch.script.js';
import { TRIM_ACKED_SCRIPT, TRIM_SCRIPT } from './scripts/trim.script.js';

/**
 * The Lua scripts of durable messaging, one module per script under `scripts/` (each lists its KEYS
 * and ARGV). Each runs atomically on the server: that is what makes "read and register for
 * ordering", "acknowledge and remember the idempotency key" and "dead-letter and acknowledge"
 * single steps that a crash cannot cut in half. Every key a script touches is passed in KEYS (never
 * built from ARGV, never an empty name), and all keys of one pattern share a hash tag (see
 * DurableKeys): the scripts run on a Redis Cluster and under key-restricted ACLs.
 *
 * Scripts whose last keys are optional take the number of keys as their first argument; the typed
 * calls in `DurableCalls` build those argument lists.
 */

type Key = string;

/** The raw script commands ioredis defines on a connection (EVALSHA, falling back to EVAL after a restart). */
export interface DurableScripts {
  rbDurablePublish(numKeys: number, ...keysAndArgs: Array<string | number>): Promise<[string, number]>;
  /** Each entry is [id, fields], or [id, kept fields, size] when it is over the max bytes. */
  rbDurableFetch(stream: Key, attempts: Key, order: Key, group: string, consumer: string, count: number, maxBytes: number): Promise<[Array<[string, string[], number?]>, string]>;
  rbDurableBegin(numKeys: number, ...keysAndArgs: Array<string | number>): Promise<[BeginDecision, number, string?, string[]?]>;
  rbDurableAck(numKeys: number, ...keysAndArgs: Array<string | number>): Promise<number>;
  rbDurableDeadLetter(numKeys: number, ...keysAndArgs: Array<string | number>): Promise<string | null>;
  rbDurableRetry(stream: Key, group: string, consumer: string, id: string): Promise<number | null>;
  rbDurableTouch(numKeys: number, ...keysAndArgs: Array<string | number>): Promise<string[]>;
  rbDurableTrim(stream: Key, threshold: string, maxLength: number, mode: '~' | '=', scanLimit: number): Promise<[number, string, number]>;
  /** The same, with `XTRIM … ACKED` (Redis 8.2 and later; see server-features.ts). */
  rbDurableTrimAcked(stream: Key, threshold: string, maxLength: number, mode: '~' | '=', scanLimit: number): Promise<[number, string, number]>;
  rbDurableReplay(stream: Key, dead: Key, deadLetterId: string, group: string): Promise<string | null>;
  rbDurableBind(bindings: Key, version: Key, operation: 'add' | 'remove', pattern: string): Promise<[number, number]>;
  rbDurablePrune(stream: Key, group: string, consumer: string, instanceId: string, idleMs: number): Promise<number>;
}

export type BeginDecision = 'lost' | 'gone' | 'wait' | 'claimed' | 'done' | 'busy' | 'exhausted' | 'isolate' | 'run';

/** `keys`: a fixed count, or `undefined` when the caller passes the count first (optional trailing keys). */
const SCRIPTS: Record<keyof DurableScripts, { keys: number | undefined; lua: string }> = {
  rbDurablePublish: { keys: undefined, lua: PUBLISH_SCRIPT },
  rbDurableFetch: { keys: 3, lua: FETCH_SCRIPT },
  rbDurableBegin: { keys: undefined, lua: BEGIN_SCRIPT },
  rbDurableAck: { keys: undefined, lua: ACK_SCRIPT },
  rbDurableDeadLetter: { keys: undefined, lua: DEAD_LETTER_SCRIPT },
  rbDurableRetry: { keys: 1, lua: RETRY_SCRIPT },
  rbDurableTouch: { keys: undefined, lua: TOUCH_SCRIPT },
  rbDurableTrim: { keys: 1, lua: TRIM_SCRIPT },
  rbDurableTrimAcked: { keys: 1, lua: TRIM_ACKED_SCRIPT },
  rbDurableReplay: { keys: 2, lua: REPLAY_SCRIPT },
  rbDurableBind: { keys: 2, lua: BIND_SCRIPT },
  rbDurablePrune: { keys: 1, lua: PRUNE_SCRIPT },
};

/** Registers the scripts on a connection and returns it typed with them. */
export function withDurableScripts(redis: Redis): Redis & DurableScripts {
  for (const [name, { keys, lua }] of Object.entries(SCRIPTS)) {
    if (!(name in redis)) redis.defineCommand(name, keys === undefined ? { lua } : { numberOfKeys: keys, lua });
  }
  return redis as Redis & DurableScripts;
}

/** Keys first, then the optional ones that are present, then the arguments: the call of a variable-keys script. */
export function keysThenArgs(keys: readonly Key[], optional: ReadonlyArray<Key | undefined>, args: ReadonlyArray<string | number>): [number, ...Array<string | number>] {
  const present = [...keys, ...optional.filter((key): key is Key => key !== undefined)];
  // An empty name would be refused by a key-restricted ACL user (and names no key): a bug, never sent.
  if (present.some((key) => key.length === 0)) throw new TypeError('a durable script was given an empty key name');
  return [present.length, ...present, ...args];
}
