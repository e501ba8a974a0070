import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { ClusterNode, ClusterOptions, RedisOptions } from 'ioredis';
import { checkReplicasWithin, resolveDurableOptions, type DurableOptions, type ResolvedDurableOptions } from './durable/durable-options.js';
import type { BufferHeaders } from './wire/envelope.js';
import { ENVELOPE_LIMITS, validateHeaders } from './wire/envelope.js';
import { InvalidOptionsError } from './errors/invalid-options.error.js';
import type { BufferReply } from './gather/reply.js';
import { MIN_SIGNING_KEY_BYTES } from './wire/signing.js';
import { nonNegativeInteger, positiveInteger, rejectUnknownKeys, timerMs } from './option-checks.js';

/** Options shared by `BufferModule.forRoot`, `RedisBufferTransport` and `BufferClient`. */
export interface BufferOptions {
  /**
   * Where Redis is: a URL (`redis://user:pass@host:6379/0`, `rediss://` for TLS) or ioredis options.
   * For a Sentinel-managed Redis, ioredis's Sentinel options: `{ sentinels: [{ host, port }, …],
   * name: 'mymaster' }` (the library turns ioredis's `failoverDetector` on unless you set it, so a
   * graceful failover is followed within about a second). For a Redis Cluster, use `cluster` instead.
   * @default 'redis://127.0.0.1:6379'
   */
  redis?: string | RedisOptions;
  /**
   * A Redis Cluster instead of one server: its startup nodes and ioredis `Cluster` options, as
   * `new Cluster(nodes, options)` takes them (put passwords and TLS in `options.redisOptions`).
   * Every channel is then sharded (`SPUBLISH`/`SSUBSCRIBE`, Redis 7 or later), so that the receiver
   * count completion rests on is exact; see docs/protocol.md. Not with `redis`.
   * @example { nodes: [{ host: 'redis-1', port: 6379 }, { host: 'redis-2', port: 6379 }] }
   * @default undefined (one server, see `redis`)
   */
  cluster?: BufferClusterOptions;
  /**
   * Prefix of every channel name. Apps with different namespaces never see each other's traffic.
   * Letters, digits, `_`, `-` and `.` only.
   * @default 'rb'
   */
  namespace?: string;
  /**
   * This instance's identity in replies and for direct requests (`to`). Set it (for example from the
   * host name or an env variable) to make it stable across restarts.
   * @default `${hostname}-${pid}-${random hex}`, new for every client or transport object
   */
  instanceId?: string;
  /**
   * Hard upper bound, in ms, on every request: it ends by then whatever else happens.
   * @default 5000
   */
  timeout?: number;
  /**
   * Default idle time, in ms, after the last reply at which a request completes (`completedBy: 'stall'`).
   * @default undefined (off)
   */
  stall?: number;
  /**
   * Largest encoded envelope, in bytes, that is published or accepted as a reply value.
   * Larger payloads are refused with `PayloadTooLargeError` before publishing.
   * @default 1048576 (1 MiB)
   */
  maxPayloadBytes?: number;
  /**
   * Envelopes bound for one channel in one event-loop tick are sent as one Redis message of at most
   * this many bytes (a single envelope larger than this goes alone).
   * @default 65536
   */
  maxBatchBytes?: number;
  /**
   * At most this many envelopes in one batched Redis message. `1` turns coalescing off.
   * @default 256
   */
  maxBatchCount?: number;
  /**
   * How long, in ms, `connect()` / `listen()` wait for the first connection to Redis.
   * @default 10000
   */
  connectTimeout?: number;
  /**
   * Most requests one client keeps open at once; past it a request fails with `TooManyRequestsError`.
   * @default 100000
   */
  maxInFlight?: number;
  /**
   * On `close()` the transport unsubscribes (no caller counts it any more), then answers what it
   * had received and waits at most this long, in ms, for handlers in flight to finish; past it,
   * what is still queued or running is answered with `BUFFER_SHUTTING_DOWN`.
   * @default 5000
   */
  shutdownTimeout?: number;
  /**
   * Most handlers one instance runs at once. Requests past it wait, first in first out, in a queue
   * of at most `maxQueuedHandlers`; past that they are answered at once with an error reply of code
   * `BUFFER_OVERLOADED` (the caller sees it as that instance's error). A request whose deadline
   * passes while it waits is refused with `BUFFER_EXPIRED`, as any expired request.
   * @default 1024
   */
  maxConcurrentHandlers?: number;
  /**
   * Most requests one instance keeps waiting for a handler slot (see `maxConcurrentHandlers`).
   * @default 10000
   */
  maxQueuedHandlers?: number;
  /**
   * Shared secret that turns on message signing (HMAC-SHA256, at least 16 bytes). Every message
   * published is signed; every message received must carry a valid signature or it is dropped and
   * counted (`stats.forgedMessages`). Give every instance and client of the namespace the same key.
   * Signed messages carry their sender's clock and sequence; one received before is dropped as a
   * replay (`stats.replayedMessages`), see `maxClockSkew`.
   * A list rotates keys: messages are signed with the first and accepted with any of them. A
   * rotation that loses nothing takes three deploys, each finished everywhere before the next:
   * `[old, new]`, then `[new, old]`, then `[new]` (a process must accept a key before any other
   * signs with it).
   * @default undefined (signing off)
   */
  signingKey?: string | Buffer | ReadonlyArray<string | Buffer>;
  /**
   * With `signingKey`: how far apart, in ms, hosts' clocks may be. The first signed message a
   * process receives from a sender on a channel is accepted only if the clock stamp it was signed
   * with is within this of the receiver's clock; after it, replays are told by their sequence
   * number, whatever the clocks. So a captured message can be replayed, once, only into a process
   * that never heard its sender on that channel, and only within this bound of its capture. Keep it
   * well above the clock skew between hosts (plus Redis's delivery delay); deadlines themselves stay
   * independent of clocks.
   * @default 30000
   */
  maxClockSkew?: number;
  /**
   * How long, in ms, an instance may show no sign of life before the requests waiting for it stop
   * waiting (it is named in `missing` with reason `'silent'`). A caller whose request has waited on
   * an instance for a quarter of this sends it a ping on its direct channel; an instance that is
   * gone (Redis counts no subscriber) is dropped at once, one that does not answer within the rest
   * of this bound is taken as frozen. Nothing is sent for requests answered sooner.
   * @default 1000
   */
  livenessTimeout?: number;
  /**
   * Events (`emit`) carry an absolute expiry this many ms after they are sent; an instance drops an
   * event received after it. This bounds how long a captured signed event can be replayed. It uses
   * wall clocks (requests do not), so keep it well above the clock skew between hosts.
   * @default 60000
   */
  eventTtl?: number;
  /**
   * Answer requests whose `replyTo` is any channel. By default an instance answers only to inbox
   * channels of its namespace (`{namespace}:inbox:…`), so a forged request cannot make every
   * instance publish onto an arbitrary channel (amplification).
   * @default false
   */
  replyToAnyChannel?: boolean;
  /** Durable messaging on Redis Streams (`@DurablePattern`, `buffer.durable`); see `DurableOptions`. */
  durable?: DurableOptions;
}

/** A Redis Cluster: where to find it, and how ioredis's `Cluster` should talk to it. */
export interface BufferClusterOptions {
  /** Some of the cluster's nodes (any will do; the others are discovered): `{ host, port }`, `'host:port'` or a port. */
  nodes: ClusterNode[];
  /**
   * ioredis `Cluster` options. The library sets `lazyConnect`, `enableOfflineQueue: false`,
   * `retryDelayOnFailover: 0` and `shardedSubscribers: false` (it keeps its own subscriber per
   * master), and `slotsRefreshInterval` to 1000 unless given.
   * @default {}
   */
  options?: ClusterOptions;
}

/** Per-call options of `send`, `scatter` and `gather`; unset fields take the module's defaults. */
export interface BufferCallOptions<T = unknown> {
  /** Hard bound in ms. @default the module's `timeout` */
  timeout?: number;
  /**
   * Complete once this many instances have finished answering (a value, an error or a refusal;
   * a streaming handler counts once, when its stream ends). @default undefined (every receiver)
   */
  quorum?: number;
  /** Complete right after the first reply for which this returns true. */
  until?: (reply: BufferReply<T>) => boolean;
  /** Complete after this many ms without a new reply (counted from the first reply). @default the module's `stall` */
  stall?: number;
  /** Send to this one instance only (its `instanceId`). */
  to?: string;
  /** String headers that reach the handler through `BufferContext.getHeaders()`. */
  headers?: Record<string, string>;
}

/** Options of `gather`: the call options, plus what a Promise cannot otherwise offer. */
export interface BufferGatherOptions<T = unknown> extends BufferCallOptions<T> {
  /** Called with each reply as it arrives, before the Promise settles (for progress, or to stream onwards). */
  onReply?: (reply: BufferReply<T>) => void;
  /** Cancels the request when aborted: the Promise rejects with `signal.reason`, and nothing more is awaited. */
  signal?: AbortSignal;
}

/** The options after defaults and validation. */
export interface ResolvedBufferOptions {
  readonly redis: string | RedisOptions;
  /** Set for a Redis Cluster (then `redis` is unused). */
  readonly cluster: { readonly nodes: readonly ClusterNode[]; readonly options: ClusterOptions } | undefined;
  readonly namespace: string;
  readonly instanceId: string;
  readonly timeout: number;
  readonly stall: number | undefined;
  readonly maxPayloadBytes: number;
  readonly maxBatchBytes: number;
  readonly maxBatchCount: number;
  readonly connectTimeout: number;
  readonly maxInFlight: number;
  readonly shutdownTimeout: number;
  readonly maxConcurrentHandlers: number;
  readonly maxQueuedHandlers: number;
  /** Signing keys, the one that signs first; empty when signing is off. */
  readonly signingKeys: ReadonlyArray<string | Buffer>;
  readonly maxClockSkew: number;
  readonly livenessTimeout: number;
  readonly eventTtl: number;
  readonly replyToAnyChannel: boolean;
  readonly durable: ResolvedDurableOptions;
}

/** The one place where defaults live. */
export const BUFFER_DEFAULTS = {
  redis: 'redis://127.0.0.1:6379',
  cluster: undefined,
  namespace: 'rb',
  timeout: 5000,
  stall: undefined,
  maxPayloadBytes: 1024 * 1024,
  maxBatchBytes: 64 * 1024,
  maxBatchCount: 256,
  connectTimeout: 10_000,
  maxInFlight: 100_000,
  shutdownTimeout: 5000,
  maxConcurrentHandlers: 1024,
  maxQueuedHandlers: 10_000,
  signingKeys: [],
  maxClockSkew: 30_000,
  livenessTimeout: 1000,
  eventTtl: 60_000,
  replyToAnyChannel: false,
} as const satisfies Omit<ResolvedBufferOptions, 'instanceId' | 'durable'>;

/** Every key of `BufferOptions`: anything else is a typo (checked at compile time to stay complete). */
const BUFFER_OPTION_KEYS = {
  redis: true,
  cluster: true,
  namespace: true,
  instanceId: true,
  timeout: true,
  stall: true,
  maxPayloadBytes: true,
  maxBatchBytes: true,
  maxBatchCount: true,
  connectTimeout: true,
  maxInFlight: true,
  shutdownTimeout: true,
  maxConcurrentHandlers: true,
  maxQueuedHandlers: true,
  signingKey: true,
  maxClockSkew: true,
  livenessTimeout: true,
  eventTtl: true,
  replyToAnyChannel: true,
  durable: true,
} as const satisfies Record<keyof BufferOptions, true>;

/** Every key of the per-call options, `gather`'s included. */
const CALL_OPTION_KEYS = {
  timeout: true,
  quorum: true,
  until: true,
  stall: true,
  to: true,
  headers: true,
  onReply: true,
  signal: true,
} as const satisfies Record<keyof BufferGatherOptions, true>;

const CLUSTER_OPTION_KEYS = { nodes: true, options: true } as const satisfies Record<keyof BufferClusterOptions, true>;

const NAME_PATTERN = /^[A-Za-z0-9_.-]+$/;

export function defaultInstanceId(): string {
  return `${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** Applies defaults and validates; throws `InvalidOptionsError` naming the option at fault. */
export function resolveBufferOptions(options: BufferOptions = {}): ResolvedBufferOptions {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionsError('options', 'must be an object');
  rejectUnknownKeys(options, BUFFER_OPTION_KEYS);
  const redis = options.redis ?? BUFFER_DEFAULTS.redis;
  if (typeof redis !== 'string' && (typeof redis !== 'object' || redis === null)) {
    throw new InvalidOptionsError('redis', 'must be a redis:// or rediss:// URL or an ioredis options object');
  }
  if (typeof redis === 'string' && !/^rediss?:\/\//.test(redis)) {
    throw new InvalidOptionsError('redis', `"${redis}" is not a redis:// or rediss:// URL`);
  }
  if (typeof redis === 'object' && redis.sentinels !== undefined && (!Array.isArray(redis.sentinels) || redis.sentinels.length === 0 || typeof redis.name !== 'string' || redis.name === '')) {
    throw new InvalidOptionsError('redis', 'with "sentinels" (a non-empty list of { host, port }) needs "name", the master name the sentinels monitor');
  }
  const cluster = resolveCluster(options.cluster);
  if (cluster !== undefined && options.redis !== undefined) {
    throw new InvalidOptionsError('cluster', 'cannot be combined with "redis": give the cluster\'s nodes in "cluster.nodes" and connection settings in "cluster.options.redisOptions"');
  }
  const namespace = options.namespace ?? BUFFER_DEFAULTS.namespace;
  if (typeof namespace !== 'string' || !NAME_PATTERN.test(namespace) || namespace.length > 64) {
    throw new InvalidOptionsError('namespace', 'must be 1 to 64 letters, digits, "_", "-" or "."');
  }
  const instanceId = options.instanceId ?? defaultInstanceId();
  if (typeof instanceId !== 'string' || instanceId.length === 0 || instanceId.length > ENVELOPE_LIMITS.instanceIdLength || /\s/.test(instanceId)) {
    throw new InvalidOptionsError('instanceId', `must be a non-empty string of at most ${ENVELOPE_LIMITS.instanceIdLength} characters without spaces`);
  }
  const maxPayloadBytes = positiveInteger('maxPayloadBytes', options.maxPayloadBytes, BUFFER_DEFAULTS.maxPayloadBytes);
  const maxBatchBytes = positiveInteger('maxBatchBytes', options.maxBatchBytes, Math.min(BUFFER_DEFAULTS.maxBatchBytes, maxPayloadBytes));
  if (maxBatchBytes > maxPayloadBytes) {
    throw new InvalidOptionsError('maxBatchBytes', `(${maxBatchBytes}) must not exceed "maxPayloadBytes" (${maxPayloadBytes})`);
  }
  const timeout = timerMs('timeout', options.timeout, BUFFER_DEFAULTS.timeout);
  const durable = resolveDurableOptions(options.durable);
  checkReplicasWithin(durable.replicas, timeout, 'durable.replicas.timeout');
  return {
    redis,
    cluster,
    namespace,
    instanceId,
    timeout,
    stall: options.stall === undefined ? undefined : timerMs('stall', options.stall, 0),
    maxPayloadBytes,
    maxBatchBytes,
    maxBatchCount: positiveInteger('maxBatchCount', options.maxBatchCount, BUFFER_DEFAULTS.maxBatchCount),
    connectTimeout: timerMs('connectTimeout', options.connectTimeout, BUFFER_DEFAULTS.connectTimeout),
    maxInFlight: positiveInteger('maxInFlight', options.maxInFlight, BUFFER_DEFAULTS.maxInFlight),
    shutdownTimeout: timerMs('shutdownTimeout', options.shutdownTimeout, BUFFER_DEFAULTS.shutdownTimeout),
    maxConcurrentHandlers: positiveInteger('maxConcurrentHandlers', options.maxConcurrentHandlers, BUFFER_DEFAULTS.maxConcurrentHandlers),
    maxQueuedHandlers: nonNegativeInteger('maxQueuedHandlers', options.maxQueuedHandlers, BUFFER_DEFAULTS.maxQueuedHandlers),
    signingKeys: signingKeys(options.signingKey),
    maxClockSkew: minimumMs('maxClockSkew', options.maxClockSkew, BUFFER_DEFAULTS.maxClockSkew, 100),
    livenessTimeout: minimumMs('livenessTimeout', options.livenessTimeout, BUFFER_DEFAULTS.livenessTimeout, 40),
    eventTtl: timerMs('eventTtl', options.eventTtl, BUFFER_DEFAULTS.eventTtl),
    replyToAnyChannel: flag('replyToAnyChannel', options.replyToAnyChannel, BUFFER_DEFAULTS.replyToAnyChannel),
    durable,
  };
}

/** The completion rules of one call, after defaults and validation. */
export interface ResolvedCallOptions<T> {
  readonly timeout: number;
  readonly quorum: number | undefined;
  readonly until: ((reply: BufferReply<T>) => boolean) | undefined;
  readonly stall: number | undefined;
  readonly to: string | undefined;
  readonly headers: BufferHeaders;
}

export function resolveCallOptions<T>(defaults: ResolvedBufferOptions, options: BufferCallOptions<T> = {}): ResolvedCallOptions<T> {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionsError('options', 'must be an object');
  rejectUnknownKeys(options, CALL_OPTION_KEYS);
  const timeout = timerMs('timeout', options.timeout, defaults.timeout);
  const quorum = options.quorum === undefined ? undefined : positiveInteger('quorum', options.quorum, 1);
  if (options.until !== undefined && typeof options.until !== 'function') throw new InvalidOptionsError('until', 'must be a function (reply) => boolean');
  const stall = options.stall === undefined ? defaults.stall : timerMs('stall', options.stall, 0);
  if (stall !== undefined && stall >= timeout) {
    throw new InvalidOptionsError('stall', `(${stall} ms) must be shorter than "timeout" (${timeout} ms), or it can never apply`);
  }
  const to = options.to;
  if (to !== undefined && (typeof to !== 'string' || to.length === 0 || to.length > ENVELOPE_LIMITS.instanceIdLength)) {
    throw new InvalidOptionsError('to', 'must be the non-empty instanceId of one instance');
  }
  if (to !== undefined && quorum !== undefined && quorum > 1) {
    throw new InvalidOptionsError('quorum', `(${quorum}) cannot exceed 1 with "to": a direct request reaches one instance`);
  }
  if (options.headers !== undefined && (typeof options.headers !== 'object' || options.headers === null || Array.isArray(options.headers))) {
    throw new InvalidOptionsError('headers', 'must be an object of strings');
  }
  // The receivers' own rule: a header the client accepts is never refused downstream.
  const headers = validateHeaders(options.headers);
  if (typeof headers === 'string') throw new InvalidOptionsError('headers', headers);
  return { timeout, quorum, until: options.until, stall, to, headers };
}

function resolveCluster(value: unknown): ResolvedBufferOptions['cluster'] {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InvalidOptionsError('cluster', 'must be an object { nodes, options? }');
  rejectUnknownKeys(value, CLUSTER_OPTION_KEYS, 'cluster.');
  const { nodes, options } = value as BufferClusterOptions;
  const valid = (node: unknown): boolean =>
    typeof node === 'string' || (typeof node === 'number' && Number.isInteger(node)) || (typeof node === 'object' && node !== null && !Array.isArray(node));
  if (!Array.isArray(nodes) || nodes.length === 0 || !nodes.every(valid)) {
    throw new InvalidOptionsError('cluster', '"nodes" must be a non-empty list of { host, port }, "host:port" or port numbers');
  }
  if (options !== undefined && (typeof options !== 'object' || options === null || Array.isArray(options))) {
    throw new InvalidOptionsError('cluster', '"options" must be an ioredis ClusterOptions object');
  }
  return { nodes: [...nodes], options: options ?? {} };
}

function signingKeys(value: unknown): ReadonlyArray<string | Buffer> {
  if (value === undefined) return [];
  const keys = Array.isArray(value) ? value : [value];
  if (keys.length === 0) throw new InvalidOptionsError('signingKey', 'must not be an empty list: leave it unset to turn signing off');
  for (const key of keys) {
    const bytes = typeof key === 'string' ? Buffer.byteLength(key) : Buffer.isBuffer(key) ? key.length : -1;
    if (bytes < MIN_SIGNING_KEY_BYTES) {
      throw new InvalidOptionsError('signingKey', `must be a string or Buffer of at least ${MIN_SIGNING_KEY_BYTES} bytes, or a list of them (for example: openssl rand -hex 32)`);
    }
  }
  return keys as Array<string | Buffer>;
}

function flag(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new InvalidOptionsError(name, `must be true or false, got ${JSON.stringify(value)}`);
  return value;
}

function minimumMs(name: string, value: unknown, fallback: number, minimum: number): number {
  const ms = timerMs(name, value, fallback);
  if (ms < minimum) throw new InvalidOptionsError(name, `must be at least ${minimum} ms, got ${ms}`);
  return ms;
}
