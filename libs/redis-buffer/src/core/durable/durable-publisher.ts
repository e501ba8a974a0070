import type { Redis } from 'ioredis';
import { validateHeaders } from '../wire/envelope.js';
import type { ResolvedBufferOptions } from '../options.js';
import { ConnectionLostError } from '../errors/connection-lost.error.js';
import { DeadLetterNotFoundError } from '../errors/dead-letter-not-found.error.js';
import { InvalidOptionsError } from '../errors/invalid-options.error.js';
import { PayloadTooLargeError } from '../errors/payload-too-large.error.js';
import { decodeDeadLetter, type DeadLetter } from './dead-letter.js';
import { closeDurableConnection, openDurableConnection } from './durable-connection.js';
import { DURABLE_LIMITS, encodeEntry, entrySize, isPattern } from './durable-entry.js';
import { EntrySigner, publishedMarkers } from './entry-signing.js';
import { checkDurablePermissions, durablePermissionError, withPermissionCheck } from './durable-permissions.js';
import { RedisPermissionError } from '../errors/redis-permission.error.js';
import { bindingKeys, DurableKeys } from './durable-keys.js';
import { checkDurablePublishOptions, resolveDeadLetterIteration, resolveDeadLetterPage, resolvePublishReplicas, type DeadLetterIterationOptions, type DeadLetterPageOptions, type DurablePublishOptions, type ResolvedDurableOptions, type ResolvedDurableReplicas } from './durable-options.js';
import { ReplicaConfirmations, type WriteTarget } from './replica-confirmation.js';
import { ReplicasUnconfirmedError } from '../errors/replicas-unconfirmed.error.js';
import { keysThenArgs, type DurableScripts } from './durable-scripts.js';
import { checkSettings } from './durable-settings.js';
import { trimStream, type TrimResult } from './retention.js';
import { streamFeatures, type StreamFeatures } from './server-features.js';
import { boundPatterns, TopicRoutes, unbindPattern } from './topic-bindings.js';
import { isWildcardPattern, TopicPattern } from '../wire/topic.js';
import { TopicPatternError } from '../errors/topic-pattern.error.js';
import type { BufferLogger } from '../logger.js';
import { BufferTelemetry } from '../telemetry/telemetry.js';

/** What the publisher needs of the module options. */
export type DurablePublisherOptions = Pick<ResolvedBufferOptions, 'redis' | 'cluster' | 'namespace' | 'instanceId' | 'connectTimeout' | 'timeout' | 'maxPayloadBytes' | 'signingKeys'> & {
  readonly durable: ResolvedDurableOptions;
};

/**
 * The publishing and operating side of durable messaging: `publish` appends an entry to the
 * pattern's stream; `deadLetters` / `replayDeadLetter` inspect and replay what a group gave up on.
 * Reached as `BufferClient.durable`; it opens its own connection on first use.
 */
export class DurablePublisher {
  private connection: Promise<Redis & DurableScripts> | undefined;
  private closed = false;
  /** Patterns whose recorded settings were compared with this publisher's (once each). */
  private readonly checked = new Set<string>();
  /** Patterns whose permissions this publisher's Redis user was checked for (once each, at their first publish). */
  private readonly permitted = new Set<string>();
  /** Signs entries and names idempotency markers; undefined when signing is off. */
  private readonly signer: EntrySigner | undefined;
  /** The wildcard bindings publishes are routed to (see topic-bindings.ts). */
  private readonly routes: TopicRoutes;
  /** WAITs for the replicas of published entries (`durable.replicas`). */
  private readonly replication = new ReplicaConfirmations();
  /** Whether this publisher's Redis user was found allowed to send WAIT (checked before the first publish that needs it). */
  private waitPermitted = false;

  constructor(
    private readonly options: DurablePublisherOptions,
    private readonly telemetry: BufferTelemetry = new BufferTelemetry('client', options.namespace, options.instanceId),
    /** Where a difference between this publisher's durable options and the consumers' is reported. */
    private readonly logger?: BufferLogger,
  ) {
    this.signer = options.signingKeys.length === 0 ? undefined : new EntrySigner(options.signingKeys);
    this.routes = new TopicRoutes(options.namespace);
  }

  /**
   * Appends an entry to `pattern`'s stream and resolves with its id once Redis has accepted it (with
   * `appendonly yes`, written to the AOF). Every consumer group of the pattern gets it, and so does
   * every group bound to a wildcard pattern that matches it (`order.*` for `order.created`): the
   * entry is appended to each such binding's stream too, and the publish resolves only once every
   * one of those streams has it. `pattern` is a topic here: one with a `*` or `>` token is refused
   * with `TopicPatternError`.
   *
   * Rejects with `ConnectionLostError` when Redis cannot be reached, and when it has not answered
   * within the module's `timeout`: the command is never queued for later, so the caller decides.
   * When the connection drops after the command was sent, the outcome is unknown (some streams may
   * have the entry and others not): publish again with the same `idempotencyKey` and the streams
   * that miss it get it, and nothing is added twice to any stream.
   *
   * With `durable.replicas` (or this call's `replicas`) `min` > 0, it resolves only once Redis's
   * `WAIT` confirmed every stream's entry on that many replicas of the master that took it, and
   * rejects with `ReplicasUnconfirmedError` when fewer confirmed within `replicas.timeout` (or the
   * connection was lost before `WAIT` answered). The entry was accepted by the master and may or
   * may not survive a failover: publish again with the same `idempotencyKey`, which adds nothing
   * twice and waits for the replicas again.
   *
   * @example
   * ```ts
   * const id = await buffer.durable.publish('order.placed', order, { key: order.customerId, idempotencyKey: order.id });
   * ```
   */
  async publish(pattern: string, data: unknown, options: DurablePublishOptions = {}): Promise<string> {
    if (!isPattern(pattern)) throw new InvalidOptionsError('pattern', 'must be a non-empty string of at most 1024 characters without "{" or "}"');
    if (isWildcardPattern(pattern)) throw new TopicPatternError(pattern, 'a wildcard pattern is what a consumer group binds to; publish to a topic without "*" or ">" tokens');
    checkDurablePublishOptions(options);
    const replicas = resolvePublishReplicas(this.options.durable.replicas, options.replicas, this.options.timeout);
    const key = boundedKey('key', options.key);
    const idempotencyKey = boundedKey('idempotencyKey', options.idempotencyKey);
    const validHeaders = validateHeaders(options.headers);
    if (typeof validHeaders === 'string') throw new InvalidOptionsError('headers', validHeaders);
    const keys = new DurableKeys(this.options.namespace, pattern);
    // The publisher's span; its context travels in the entry's headers to every group's handler.
    const traced = this.telemetry.startRequest('durable', pattern, keys.stream, idempotencyKey ?? '', validHeaders);
    const headers = traced?.headers ?? validHeaders;
    try {
      const id = await this.append(keys, pattern, data, headers, key, idempotencyKey, replicas);
      this.telemetry.endSend(traced?.trace, { 'messaging.message.id': id });
      return id;
    } catch (error) {
      this.telemetry.endSend(traced?.trace, {}, error as Error);
      throw error;
    }
  }

  private async append(
    keys: DurableKeys,
    pattern: string,
    data: unknown,
    headers: Readonly<Record<string, string>>,
    key: string | undefined,
    idempotencyKey: string | undefined,
    replicas: ResolvedDurableReplicas,
  ): Promise<string> {
    const unsigned = encodeEntry({
      pattern,
      dataJson: JSON.stringify(data),
      headers,
      key,
      idempotencyKey,
      from: this.options.instanceId,
      publishedAt: Date.now(),
    });
    const fields = this.signer === undefined ? unsigned : this.signer.sign(keys.stream, unsigned);
    // The consumers refuse, unread, an entry over their maxPayloadBytes counted the same way.
    const size = entrySize(fields);
    if (size > this.options.maxPayloadBytes) throw new PayloadTooLargeError(size, this.options.maxPayloadBytes, 'durable entry');
    const connection = await this.open();
    try {
      if (!this.checked.has(pattern)) {
        this.checked.add(pattern);
        // Reported, never in the way: a publish does not wait for it nor fail with it.
        void checkSettings(connection, keys.settings, pattern, this.options.durable, this.options.instanceId, this.logger, 'publisher').catch(() => this.checked.delete(pattern));
      }
      if (!this.permitted.has(pattern)) {
        // Fails the first publish of a pattern at once, naming what the Redis user lacks, rather
        // than only after a script flush (EVAL) or at a later command.
        await checkDurablePermissions(connection, this.options.namespace, 'publisher', this.options.instanceId, [{ keys }], false);
        this.permitted.add(pattern);
      }
      if (replicas.min > 0 && !this.waitPermitted) {
        // Before the first write that needs it: refused after the write, the entry would be in
        // Redis and the publish rejected for a permission.
        await withPermissionCheck(() => connection.wait(0, 1), this.options.namespace, 'publisher', 'WAIT', keys.stream);
        this.waitPermitted = true;
      }
      // One single-slot script per stream (each pattern's keys are in their own Cluster slot), each
      // checking its own idempotency markers: a retry after a partial publish fills only the gaps.
      // Each stream's copy is signed for that stream (a signature is bound to its stream's key).
      const durable = this.options.durable;
      const appendTo = async (target: DurableKeys, signed: readonly string[]): Promise<[string, number]> => {
        const published = idempotencyKey === undefined ? [] : publishedMarkers(target, idempotencyKey, this.signer);
        const write = (): Promise<[string, number]> =>
          connection.rbDurablePublish(...keysThenArgs([target.stream], published, [durable.idempotencyWindow, durable.maxLength, durable.approximateTrim ? '~' : '=', ...signed]));
        if (replicas.min === 0) return write();
        const before = this.replication.target(connection, target.stream);
        const appended = await write();
        await this.confirmReplicas(connection, pattern, target.stream, appended[0], before, replicas);
        return appended;
      };
      const registry = bindingKeys(this.options.namespace).bindings;
      const routed = withPermissionCheck(() => this.routes.matching(connection, pattern), this.options.namespace, 'publisher', 'GET, SMEMBERS (the bindings registry)', registry).then((bindings) =>
        Promise.all(
          bindings.map((binding) => {
            const target = new DurableKeys(this.options.namespace, binding);
            return appendTo(target, this.signer === undefined ? unsigned : this.signer.sign(target.stream, unsigned));
          }),
        ),
      );
      const [[id]] = await Promise.all([appendTo(keys, fields), routed]);
      return id;
    } catch (cause) {
      throw this.failure('publishing', 'EVALSHA (the publish script)', keys.stream, cause);
    }
  }

  /**
   * Waits until `replicas.min` replicas have the entry just written (also a duplicate publish's: its
   * script rewrote the marker it found, so WAIT covers the first publish's entry too).
   */
  private async confirmReplicas(connection: Redis, pattern: string, stream: string, id: string, before: WriteTarget | undefined, replicas: ResolvedDurableReplicas): Promise<void> {
    let confirmed: number;
    try {
      confirmed = await this.replication.confirm(connection, stream, before, replicas);
    } catch (cause) {
      throw durablePermissionError(cause, this.options.namespace, 'publisher', 'WAIT', stream) ?? new ReplicasUnconfirmedError(pattern, stream, id, 0, replicas.min, replicas.timeout, { cause });
    }
    if (confirmed < replicas.min) throw new ReplicasUnconfirmedError(pattern, stream, id, confirmed, replicas.min, replicas.timeout);
  }

  /**
   * The group's dead letters, oldest first: each with the last error, the attempts made and the
   * original entry. Page with `after` (the last `id` seen).
   */
  async deadLetters(pattern: string, group: string, options: DeadLetterPageOptions = {}): Promise<DeadLetter[]> {
    const { count, after } = resolveDeadLetterPage(options);
    const keys = this.keysFor(pattern);
    const connection = await this.open();
    const start = after === undefined ? '-' : `(${after}`;
    const dead = keys.deadLetters(group);
    const entries = (await withPermissionCheck(() => connection.xrange(dead, start, '+', 'COUNT', count), this.options.namespace, 'publisher', 'XRANGE', dead)) as Array<[string, string[]]>;
    return entries.map(([id, fields]) => decodeDeadLetter(id, fields));
  }

  /**
   * Every dead letter of the group, oldest first, fetched a page at a time as the loop goes on;
   * dead letters added meanwhile are included, those replayed meanwhile are skipped.
   *
   * @example
   * ```ts
   * for await (const dead of buffer.durable.eachDeadLetter('order.placed', 'billing')) {
   *   if (isFixed(dead.error)) await buffer.durable.replayDeadLetter('order.placed', 'billing', dead.id);
   * }
   * ```
   */
  async *eachDeadLetter(pattern: string, group: string, options: DeadLetterIterationOptions = {}): AsyncIterableIterator<DeadLetter> {
    const { pageSize } = resolveDeadLetterIteration(options);
    let after: string | undefined;
    while (true) {
      const page = await this.deadLetters(pattern, group, after === undefined ? { count: pageSize } : { count: pageSize, after });
      if (page.length === 0) return;
      yield* page;
      after = page[page.length - 1]!.id;
    }
  }

  /**
   * Publishes a dead letter's entry again, for its group only (other groups already handled it),
   * and removes the dead letter; resolves with the new entry's id. Its attempts start again from 1.
   * Fix the cause first: an entry that fails again comes back to the dead-letter stream. One script
   * does both, only if the dead letter is still there: two replays of it at once add one entry, and
   * the second rejects with `DeadLetterNotFoundError`.
   */
  async replayDeadLetter(pattern: string, group: string, deadLetterId: string): Promise<string> {
    const keys = this.keysFor(pattern);
    const connection = await this.open();
    let id: string | null;
    try {
      id = await connection.rbDurableReplay(keys.stream, keys.deadLetters(group), deadLetterId, group);
    } catch (cause) {
      throw this.failure('replaying', 'EVALSHA (the replay script)', keys.stream, cause);
    }
    if (id === null) throw new DeadLetterNotFoundError(pattern, group, deadLetterId);
    return id;
  }

  /** The wildcard patterns consumer groups have bound in this namespace (durable topics), sorted. */
  async bindings(): Promise<string[]> {
    try {
      return await boundPatterns(await this.open(), this.options.namespace);
    } catch (cause) {
      throw this.failure('reading the bindings', 'SMEMBERS', bindingKeys(this.options.namespace).bindings, cause);
    }
  }

  /**
   * Removes a wildcard binding: publishes that start after this resolved no longer route entries to
   * its stream. The stream, its groups and their dead letters stay (inspect, replay or delete them
   * as for any pattern). A consumer that starts again with the binding registers it again. Resolves
   * whether the binding was there.
   */
  async unbind(pattern: string): Promise<boolean> {
    // Only a valid wildcard pattern can have been bound: anything else is refused as at binding.
    new TopicPattern(pattern);
    try {
      return await unbindPattern(await this.open(), this.options.namespace, pattern);
    } catch (cause) {
      throw this.failure('unbinding', 'EVALSHA (the bind script)', bindingKeys(this.options.namespace).bindings, cause);
    }
  }

  /** Trims `pattern`'s stream now by `durable.maxLength` / `durable.maxAge`, never past what a group still needs. */
  async trim(pattern: string): Promise<TrimResult> {
    const connection = await this.open();
    const { stream } = this.keysFor(pattern);
    return withPermissionCheck(() => trimStream(connection, stream, this.options.durable), this.options.namespace, 'publisher', 'EVALSHA (the trim script)', stream);
  }

  /**
   * The Redis version behind durable messaging and which of its newer stream commands this client
   * uses (`XTRIM … ACKED` from Redis 8.2); Redis 7.0's path is used for everything else.
   */
  async serverFeatures(): Promise<StreamFeatures> {
    return streamFeatures(await this.open());
  }

  /** The Redis keys of `pattern` (stream, dead letters…), for inspection with other tools. */
  keysFor(pattern: string): DurableKeys {
    if (!isPattern(pattern)) throw new InvalidOptionsError('pattern', 'must be a non-empty string of at most 1024 characters without "{" or "}"');
    return new DurableKeys(this.options.namespace, pattern);
  }

  async close(): Promise<void> {
    this.closed = true;
    const connection = this.connection;
    this.connection = undefined;
    if (connection !== undefined) await closeDurableConnection(await connection.catch(() => undefined));
  }

  /** A permission refusal as `RedisPermissionError`, a Redis error as it is, anything else as a lost connection. */
  private failure(what: string, sent: string, target: string, cause: unknown): Error {
    if (cause instanceof RedisPermissionError || cause instanceof ReplicasUnconfirmedError) return cause;
    return durablePermissionError(cause, this.options.namespace, 'publisher', sent, target) ?? asConnectionError(what, cause);
  }

  private open(): Promise<Redis & DurableScripts> {
    if (this.closed) return Promise.reject(new ConnectionLostError('the client was closed'));
    this.connection ??= openDurableConnection({
      redis: this.options.redis,
      cluster: this.options.cluster,
      connectTimeout: this.options.connectTimeout,
      connectionName: `rb-durable-pub:${this.options.instanceId}`,
      offlineQueue: false,
      // The module's hard bound on a request bounds a publish too, also against a frozen Redis.
      commandTimeout: this.options.timeout,
    }).catch((error: unknown) => {
      this.connection = undefined;
      throw error;
    });
    return this.connection;
  }
}

function boundedKey(name: string, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0 || value.length > DURABLE_LIMITS.keyLength) {
    throw new InvalidOptionsError(name, `must be a string of 1 to ${DURABLE_LIMITS.keyLength} characters`);
  }
  return value;
}

function asConnectionError(what: string, cause: unknown): Error {
  if (cause instanceof Error && /^(ERR|WRONGTYPE|NOSCRIPT|NOPERM|NOAUTH|BUSYGROUP|NOGROUP)\b/.test(cause.message)) return cause;
  return new ConnectionLostError(`${what} failed`, { cause });
}
