import { InvalidOptionsError } from '../errors/invalid-options.error.js';
import { validateHeaders, type BufferHeaders } from '../wire/envelope.js';
import { nonNegativeInteger, positiveInteger, timerMs, rejectUnknownKeys } from '../option-checks.js';

/**
 * Options of durable messaging (Redis Streams), under the `durable` key of `BufferOptions`.
 * The same object configures the publishing side (`BufferClient.durable`) and the consuming side
 * (`@DurablePattern` handlers on `RedisBufferTransport`).
 */
export interface DurableOptions {
  /**
   * Consumer group of a `@DurablePattern` handler that names none. Every group receives every entry;
   * the instances of one group share its entries, each entry going to one of them at a time.
   * @default 'default'
   */
  group?: string;
  /**
   * Where a group that does not exist yet starts reading: `'beginning'` handles every entry the
   * stream still holds, `'end'` only entries published after the group was created.
   * @default 'beginning'
   */
  newGroupStartsAt?: 'beginning' | 'end';
  /**
   * How many times an entry is run before it goes to the dead-letter stream. A delivery that never
   * finished (its instance crashed or froze) counts as an attempt.
   * @default 5
   */
  maxAttempts?: number;
  /**
   * Delay, in ms, before the second attempt; it doubles for each further attempt, up to `maxRetryDelay`.
   * @default 1000
   */
  retryDelay?: number;
  /**
   * Longest delay, in ms, between two attempts.
   * @default 30000
   */
  maxRetryDelay?: number;
  /**
   * An entry delivered to an instance that has shown no sign of life for this long, in ms, is
   * claimed by another instance of the group (XAUTOCLAIM) and run there. Live instances renew their
   * entries every third of it, so a handler may run longer than this without being run twice.
   * @default 30000
   */
  claimIdle?: number;
  /**
   * How often, in ms, an instance looks for entries to claim.
   * @default 5000
   */
  claimInterval?: number;
  /**
   * Most entries one instance holds at once, over all its durable handlers (running, waiting for a
   * retry, or waiting for their turn behind an earlier entry with the same `key`). Past it the
   * instance reads nothing more until one finishes: entries wait in Redis, not in memory. An entry
   * waiting for its key's turn may still claim that key's orphaned head (idle for `claimIdle`) and
   * run it first, beyond this bound, so a full instance never stalls a key behind a dead consumer.
   * @default 32
   */
  maxInFlight?: number;
  /**
   * How long, in ms, an idempotency key is remembered: a second entry with the same key published,
   * or handled by the same group, within this window is not run again.
   * @default 86400000 (24 hours)
   */
  idempotencyWindow?: number;
  /**
   * Streams are trimmed to about this many entries. Entries some group has not acknowledged yet are
   * never trimmed, so a stream may hold more while a group lags. `0` turns length-based trimming off.
   * @default 100000
   */
  maxLength?: number;
  /**
   * Entries older than this, in ms, are trimmed (again never before every group acknowledged them).
   * @default undefined (off)
   */
  maxAge?: number;
  /**
   * How often, in ms, each consuming instance trims the streams it reads.
   * @default 60000
   */
  trimInterval?: number;
  /**
   * Trim with `~` (whole radix-tree nodes only, much cheaper) rather than exactly.
   * @default true
   */
  approximateTrim?: boolean;
  /**
   * Per-pattern handler options from configuration (an environment variable, a config service)
   * rather than the decorator: `{ 'order.placed': { group: process.env.BILLING_GROUP } }`. A field
   * the `@DurablePattern` decorator sets itself wins over this one.
   * @default {}
   */
  handlers?: Readonly<Record<string, DurableHandlerOptions>>;
  /**
   * Synchronous replication of published entries (Redis `WAIT`): `publish` resolves only once
   * `min` replicas of the master that took the entry have it, and rejects with
   * `ReplicasUnconfirmedError` when fewer confirm within `timeout`. Redis replicates
   * asynchronously, and Sentinel or Cluster may promote a replica that lacks the last writes of a
   * master that died: without this, an entry whose publish resolved just before the master died
   * can be lost. A `publish` call may set its own (`{ replicas: { min: 0 } }` skips the wait).
   * @example `{ min: 1, timeout: 500 }`
   * @default { min: 0, timeout: 1000 } (no wait)
   */
  replicas?: DurableReplicasOptions;
}

/** How many replicas must confirm a published entry, and for how long a publish waits for them. */
export interface DurableReplicasOptions {
  /**
   * Replicas that must have received the entry (and the writes before it on the same master)
   * before `publish` resolves. `0` does not wait. More than the master has means every publish
   * waits `timeout` and rejects.
   * @default 0
   */
  min?: number;
  /**
   * How long, in ms, a publish waits for them (`WAIT`'s timeout); shorter than the module's
   * `timeout`, which bounds each Redis command of a publish.
   * @default 1000
   */
  timeout?: number;
}

/** Per-handler options of `@DurablePattern`; unset fields take the module's `durable` options. */
export interface DurableHandlerOptions {
  /** This handler's consumer group. @default the module's `durable.group` */
  group?: string;
  /** @default the module's `durable.maxAttempts` */
  maxAttempts?: number;
  /** @default the module's `durable.retryDelay` */
  retryDelay?: number;
  /** @default the module's `durable.maxRetryDelay` */
  maxRetryDelay?: number;
  /**
   * Routing by header (a headers exchange, every header must match): the handler runs only entries
   * whose headers include each of these names with exactly this value. The group still receives
   * every entry of its pattern; one that does not match is acknowledged without running and counted
   * in `stats.filtered`. Give another group (or another handler) the entries it leaves out.
   * @example `{ region: 'eu' }`
   * @default undefined (every entry runs)
   */
  headers?: Record<string, string>;
}

/** Options of one `publish` call. */
export interface DurablePublishOptions {
  /**
   * Entries with the same key are handled in publication order within each group, one at a time;
   * entries with different keys (or none) run in parallel.
   */
  key?: string;
  /**
   * Within `idempotencyWindow`: a second publish with this key returns the first entry's id and
   * adds nothing, and each group runs at most one entry carrying this key to success.
   */
  idempotencyKey?: string;
  /** String headers that reach the handler through `DurableContext.getHeaders()`. */
  headers?: Record<string, string>;
  /** This publish's replicas to wait for; unset fields take the module's `durable.replicas`. */
  replicas?: DurableReplicasOptions;
}

export interface ResolvedDurableReplicas {
  readonly min: number;
  readonly timeout: number;
}

export interface ResolvedDurableOptions {
  readonly group: string;
  readonly newGroupStartsAt: 'beginning' | 'end';
  readonly maxAttempts: number;
  readonly retryDelay: number;
  readonly maxRetryDelay: number;
  readonly claimIdle: number;
  readonly claimInterval: number;
  readonly maxInFlight: number;
  readonly idempotencyWindow: number;
  readonly maxLength: number;
  readonly maxAge: number | undefined;
  readonly trimInterval: number;
  readonly approximateTrim: boolean;
  readonly handlers: Readonly<Record<string, ResolvedDurableHandlerOptions>>;
  readonly replicas: ResolvedDurableReplicas;
}

export interface ResolvedDurableHandlerOptions {
  readonly group: string;
  readonly maxAttempts: number;
  readonly retryDelay: number;
  readonly maxRetryDelay: number;
  /** Headers an entry must carry to run (none: every entry runs). */
  readonly headers?: BufferHeaders | undefined;
}

/** The one place where durable defaults live. */
export const DURABLE_DEFAULTS = {
  group: 'default',
  newGroupStartsAt: 'beginning',
  maxAttempts: 5,
  retryDelay: 1000,
  maxRetryDelay: 30_000,
  claimIdle: 30_000,
  claimInterval: 5000,
  maxInFlight: 32,
  idempotencyWindow: 86_400_000,
  maxLength: 100_000,
  maxAge: undefined,
  trimInterval: 60_000,
  approximateTrim: true,
  handlers: {},
  replicas: { min: 0, timeout: 1000 },
} as const satisfies ResolvedDurableOptions;

/** Every key of `DurableOptions` (checked at compile time to stay complete). */
const DURABLE_OPTION_KEYS = {
  group: true,
  newGroupStartsAt: true,
  maxAttempts: true,
  retryDelay: true,
  maxRetryDelay: true,
  claimIdle: true,
  claimInterval: true,
  maxInFlight: true,
  idempotencyWindow: true,
  maxLength: true,
  maxAge: true,
  trimInterval: true,
  approximateTrim: true,
  handlers: true,
  replicas: true,
} as const satisfies Record<keyof DurableOptions, true>;

const REPLICAS_OPTION_KEYS = { min: true, timeout: true } as const satisfies Record<keyof DurableReplicasOptions, true>;

const HANDLER_OPTION_KEYS = { group: true, maxAttempts: true, retryDelay: true, maxRetryDelay: true, headers: true } as const satisfies Record<keyof DurableHandlerOptions, true>;

const PUBLISH_OPTION_KEYS = { key: true, idempotencyKey: true, headers: true, replicas: true } as const satisfies Record<keyof DurablePublishOptions, true>;

/** The options of `durable.deadLetters`: a page of at most `count` (default 100) after the dead letter `after`. */
export interface DeadLetterPageOptions {
  /** @default 100 */
  count?: number;
  /** The id of the last dead letter of the previous page. @default the first */
  after?: string;
}

/** The options of `durable.eachDeadLetter`. */
export interface DeadLetterIterationOptions {
  /** Dead letters fetched per round trip. @default 100 */
  pageSize?: number;
}

const DEAD_LETTER_PAGE_KEYS = { count: true, after: true } as const satisfies Record<keyof DeadLetterPageOptions, true>;
const DEAD_LETTER_ITERATION_KEYS = { pageSize: true } as const satisfies Record<keyof DeadLetterIterationOptions, true>;

/** A stream entry id, as Redis writes them. */
const STREAM_ID = /^\d+-\d+$/;

/** The options of a `deadLetters` page, checked: unknown keys and bad values throw `InvalidOptionsError`. */
export function resolveDeadLetterPage(options: DeadLetterPageOptions): { count: number; after: string | undefined } {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionsError('options', 'must be an object');
  rejectUnknownKeys(options, DEAD_LETTER_PAGE_KEYS);
  if (options.after !== undefined && (typeof options.after !== 'string' || !STREAM_ID.test(options.after))) {
    throw new InvalidOptionsError('after', `must be the id of a dead letter ("<ms>-<seq>", a DeadLetter's id), got ${JSON.stringify(options.after)}`);
  }
  return { count: positiveInteger('count', options.count, 100), after: options.after };
}

/** The options of `eachDeadLetter`, checked: unknown keys and bad values throw `InvalidOptionsError`. */
export function resolveDeadLetterIteration(options: DeadLetterIterationOptions): { pageSize: number } {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionsError('options', 'must be an object');
  rejectUnknownKeys(options, DEAD_LETTER_ITERATION_KEYS);
  return { pageSize: positiveInteger('pageSize', options.pageSize, 100) };
}

/** Throws an `InvalidOptionsError` for a key of a `publish` call's options that does not exist. */
export function checkDurablePublishOptions(options: DurablePublishOptions): void {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionsError('options', 'must be an object');
  rejectUnknownKeys(options, PUBLISH_OPTION_KEYS);
}

/** Group names, like namespaces: they end up in key names. */
const GROUP_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

/** Applies defaults and validates; throws `InvalidOptionsError` naming the option at fault (`durable.<name>`). */
export function resolveDurableOptions(options: DurableOptions = {}): ResolvedDurableOptions {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionsError('durable', 'must be an object');
  rejectUnknownKeys(options, DURABLE_OPTION_KEYS, 'durable.');
  const name = (field: string): string => `durable.${field}`;
  const newGroupStartsAt = options.newGroupStartsAt ?? DURABLE_DEFAULTS.newGroupStartsAt;
  if (newGroupStartsAt !== 'beginning' && newGroupStartsAt !== 'end') {
    throw new InvalidOptionsError(name('newGroupStartsAt'), `must be "beginning" or "end", got ${JSON.stringify(newGroupStartsAt)}`);
  }
  const claimIdle = timerMs(name('claimIdle'), options.claimIdle, DURABLE_DEFAULTS.claimIdle);
  // Instances renew what they hold every claimIdle / 3: shorter would be renewal traffic, not safety.
  if (claimIdle < 30) throw new InvalidOptionsError(name('claimIdle'), `must be at least 30 ms, got ${claimIdle}`);
  const approximateTrim = options.approximateTrim ?? DURABLE_DEFAULTS.approximateTrim;
  if (typeof approximateTrim !== 'boolean') throw new InvalidOptionsError(name('approximateTrim'), 'must be true or false');
  const handlers = options.handlers ?? DURABLE_DEFAULTS.handlers;
  if (typeof handlers !== 'object' || handlers === null) throw new InvalidOptionsError(name('handlers'), 'must be an object of pattern → handler options');
  const common = resolveHandlerFields(options, DURABLE_DEFAULTS, name);
  const resolvedHandlers: Record<string, ResolvedDurableHandlerOptions> = {};
  for (const [pattern, handler] of Object.entries(handlers)) {
    if (typeof handler !== 'object' || handler === null) throw new InvalidOptionsError(name(`handlers.${pattern}`), 'must be an object');
    rejectUnknownKeys(handler, HANDLER_OPTION_KEYS, `durable.handlers.${pattern}.`);
    resolvedHandlers[pattern] = resolveHandlerFields(handler, common, (field) => name(`handlers.${pattern}.${field}`));
  }
  return {
    ...common,
    handlers: resolvedHandlers,
    newGroupStartsAt,
    claimIdle,
    claimInterval: timerMs(name('claimInterval'), options.claimInterval, Math.min(DURABLE_DEFAULTS.claimInterval, claimIdle)),
    maxInFlight: positiveInteger(name('maxInFlight'), options.maxInFlight, DURABLE_DEFAULTS.maxInFlight),
    idempotencyWindow: timerMs(name('idempotencyWindow'), options.idempotencyWindow, DURABLE_DEFAULTS.idempotencyWindow),
    maxLength: nonNegativeInteger(name('maxLength'), options.maxLength, DURABLE_DEFAULTS.maxLength),
    maxAge: options.maxAge === undefined ? undefined : timerMs(name('maxAge'), options.maxAge, 0),
    trimInterval: timerMs(name('trimInterval'), options.trimInterval, DURABLE_DEFAULTS.trimInterval),
    approximateTrim,
    replicas: resolveReplicas(options.replicas, DURABLE_DEFAULTS.replicas, 'durable.replicas'),
  };
}

/**
 * The replicas one publish waits for: its own fields over the module's `durable.replicas`.
 * `commandTimeout` is the module's `timeout`, which bounds each command of the publish, WAIT included.
 */
export function resolvePublishReplicas(defaults: ResolvedDurableReplicas, options: DurableReplicasOptions | undefined, commandTimeout: number): ResolvedDurableReplicas {
  const replicas = resolveReplicas(options, defaults, 'replicas');
  checkReplicasWithin(replicas, commandTimeout, options?.timeout === undefined ? 'durable.replicas.timeout' : 'replicas.timeout');
  return replicas;
}

/**
 * Throws unless a wait for replicas fits in the command bound: WAIT is a Redis command like the
 * others, and cut at `commandTimeout` it would fail as a lost connection, not as unconfirmed.
 */
export function checkReplicasWithin(replicas: ResolvedDurableReplicas, commandTimeout: number, name: string): void {
  if (replicas.min > 0 && replicas.timeout >= commandTimeout) {
    throw new InvalidOptionsError(name, `(${replicas.timeout} ms) must be shorter than "timeout" (${commandTimeout} ms), which bounds each Redis command of a publish, WAIT included`);
  }
}

function resolveReplicas(options: DurableReplicasOptions | undefined, defaults: ResolvedDurableReplicas, name: string): ResolvedDurableReplicas {
  if (options === undefined) return defaults;
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw new InvalidOptionsError(name, 'must be an object { min, timeout }');
  rejectUnknownKeys(options, REPLICAS_OPTION_KEYS, `${name}.`);
  return {
    min: nonNegativeInteger(`${name}.min`, options.min, defaults.min),
    timeout: timerMs(`${name}.timeout`, options.timeout, defaults.timeout),
  };
}

/**
 * The options of one `@DurablePattern` handler: its own fields, over the configuration's for its
 * pattern (`durable.handlers`), over the module's.
 */
export function resolveDurableHandlerOptions(defaults: ResolvedDurableOptions, options: DurableHandlerOptions = {}, pattern?: string): ResolvedDurableHandlerOptions {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionsError('options', 'must be an object');
  rejectUnknownKeys(options, HANDLER_OPTION_KEYS);
  const configured = pattern === undefined ? undefined : defaults.handlers?.[pattern];
  return resolveHandlerFields(options, configured ?? defaults, (field) => field);
}

function resolveHandlerFields(options: DurableHandlerOptions, defaults: ResolvedDurableHandlerOptions, name: (field: string) => string): ResolvedDurableHandlerOptions {
  const group = options.group ?? defaults.group;
  if (typeof group !== 'string' || !GROUP_PATTERN.test(group)) {
    throw new InvalidOptionsError(name('group'), 'must be 1 to 64 letters, digits, "_", "-" or "."');
  }
  const retryDelay = timerMs(name('retryDelay'), options.retryDelay, defaults.retryDelay);
  const maxRetryDelay = timerMs(name('maxRetryDelay'), options.maxRetryDelay, Math.max(defaults.maxRetryDelay, retryDelay));
  if (maxRetryDelay < retryDelay) {
    throw new InvalidOptionsError(name('maxRetryDelay'), `(${maxRetryDelay} ms) must not be shorter than "retryDelay" (${retryDelay} ms)`);
  }
  // The same rule as a publish's headers: a filter no entry could ever match is refused.
  const headers = options.headers === undefined ? defaults.headers : validateHeaders(options.headers);
  if (typeof headers === 'string') throw new InvalidOptionsError(name('headers'), headers);
  const filter = headers === undefined || Object.keys(headers).length === 0 ? undefined : headers;
  return { group, maxAttempts: positiveInteger(name('maxAttempts'), options.maxAttempts, defaults.maxAttempts), retryDelay, maxRetryDelay, ...(filter === undefined ? {} : { headers: filter }) };
}

/** Whether an entry's headers pass a handler's header filter (each filtered header present, same value). */
export function headersMatch(filter: BufferHeaders | undefined, headers: BufferHeaders): boolean {
  if (filter === undefined) return true;
  for (const name in filter) {
    if (Object.hasOwn(filter, name) && (!Object.hasOwn(headers, name) || headers[name] !== filter[name])) return false;
  }
  return true;
}

/** Delay before the attempt after `attempt` (1-based): doubling from `retryDelay`, capped, with up to 20 % jitter below. */
export function retryDelayAfter(attempt: number, options: Pick<ResolvedDurableHandlerOptions, 'retryDelay' | 'maxRetryDelay'>, random: () => number = Math.random): number {
  const base = Math.min(options.maxRetryDelay, options.retryDelay * 2 ** Math.min(attempt - 1, 30));
  // Jitter spreads the retries of entries that failed together (a dependency down) over time.
  return Math.round(base * (0.8 + 0.2 * random()));
}
