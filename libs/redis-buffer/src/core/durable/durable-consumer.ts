import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { BoundedLog, type BufferLogger } from '../logger.js';
import { BacklogSampler, type DurableBacklog } from './backlog-sampler.js';
import { within } from '../async/bounded-wait.js';
import { closeDurableConnection, openDurableConnection, StreamWaiter } from './durable-connection.js';
import { emptyDurableConsumerStats, type DurableConsumerStats } from './durable-consumer-stats.js';
import type { DurableSubscription } from './durable-delivery.js';
import { DurableKeys } from './durable-keys.js';
import { DurableReader } from './durable-reader.js';
import type { DurableScripts } from './durable-scripts.js';
import { EntryRunner } from './entry-runner.js';
import { EntrySigner } from './entry-signing.js';
import { checkDurablePermissions, durablePermissionError, withPermissionCheck } from './durable-permissions.js';
import { HeldEntries, sleep, type ConsumerContext, type DurableConsumerOptions, type Subscription } from './held-entries.js';
import { KeyGate } from './key-gate.js';
import { LeaseKeeper } from './lease-keeper.js';
import { trimStream } from './retention.js';
import { bindPatterns } from './topic-bindings.js';
import { isWildcardPattern, TopicPattern } from '../wire/topic.js';

export type { DurableDelivery, DurableRun, DurableSubscription } from './durable-delivery.js';
export type { DurableConsumerStats } from './durable-consumer-stats.js';
export type { DurableConsumerOptions } from './held-entries.js';
export type { DurableBacklog } from './backlog-sampler.js';

/** Shortest period between two backlog samples (they run every claimInterval otherwise). */
const MIN_SAMPLE_MS = 1000;
/** At shutdown, how long releasing the handlers still running may take once shutdownTimeout has passed. */
const RELEASE_GRACE_MS = 1000;
/** Least idle time of an earlier process's consumer name before it is removed (see `pruneNames`), and least time between two prunes. */
const MIN_PRUNE_IDLE_MS = 1000;

/**
 * Consumes the streams of one instance's `@DurablePattern` handlers (no Nest import: the transport
 * hands it a `run` function per handler). It wires four parts, each in its own file:
 *
 * - `DurableReader`: the read loop (FETCH script, then XREAD BLOCK when nothing is new), at most
 *   `maxInFlight` entries held at once;
 * - `LeaseKeeper`: renews what this instance holds, claims what stopped instances held, releases at
 *   shutdown;
 * - `KeyGate`: per-key turns (an entry waits while an earlier one of its key is unacknowledged);
 * - `EntryRunner`: one entry's attempts: begin, run, acknowledge, retry or dead-letter (with
 *   `SuspectQueue` isolating claimed entries that keep killing their instances);
 * - `BacklogSampler`: each group's lag, pending count and oldest pending age, for monitoring.
 *
 * On close it stops reading, lets running handlers finish for `shutdownTimeout`, and releases the
 * rest (their idle time is set to `claimIdle`, so another instance claims them at its next look).
 */
export class DurableConsumer {
  readonly stats: DurableConsumerStats = emptyDurableConsumerStats();
  private readonly subscriptions: Subscription[];
  private readonly held = new HeldEntries();
  private readonly context: ConsumerContext;
  private readonly runner: EntryRunner;
  private readonly leases: LeaseKeeper;
  private readonly gate: KeyGate;
  private readonly sampler: BacklogSampler;
  private reader: DurableReader | undefined;
  private command: (Redis & DurableScripts) | undefined;
  private blocking: StreamWaiter | undefined;
  private stopping = false;
  private readonly intervals: Array<ReturnType<typeof setInterval>> = [];
  /** Renews what this instance holds; kept through close() while handlers finish, so their leases do not lapse. */
  private renewing: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly options: DurableConsumerOptions,
    subscriptions: readonly DurableSubscription[],
    private readonly logger: BufferLogger,
  ) {
    this.subscriptions = subscriptions.map((subscription) => ({
      ...subscription,
      ...topicOf(subscription.pattern),
      keys: new DurableKeys(options.namespace, subscription.pattern),
      group: subscription.options.group,
      claimCursor: '0-0',
      retried: 0,
      deadLettered: 0,
    }));
    const errors = new BoundedLog(logger, 5, 30_000);
    this.context = {
      options,
      // A name of its own per process: two processes started under one instance id (a pod replaced
      // while the old one was frozen, a duplicate) are two owners to Redis, and one's pending entries
      // are the other's only by a claim. Under one shared name each would act on the other's.
      name: `${options.instanceId}@${randomBytes(4).toString('hex')}`,
      stats: this.stats,
      logger,
      held: this.held,
      signer: options.signingKeys.length === 0 ? undefined : new EntrySigner(options.signingKeys),
      command: () => this.command!,
      stopping: () => this.stopping,
      redisError: (what, error) => {
        this.stats.redisErrors++;
        // A permission refusal is reported as the typed error, with what to grant, never as a raw NOPERM.
        const refused = durablePermissionError(error, options.namespace, 'consumer', `a durable script or command (${what})`, `${options.namespace}:durable:*`);
        errors.warn(`Durable messaging: ${what} failed: ${refused === undefined ? ((error as Error)?.message ?? String(error)) : `${refused.name}: ${refused.message}`}`);
      },
    };
    this.runner = new EntryRunner(this.context);
    this.gate = new KeyGate(this.context, (held) => this.runner.resume(held));
    this.runner.useGate(this.gate);
    this.sampler = new BacklogSampler(this.context, this.subscriptions);
    this.leases = new LeaseKeeper(this.context, this.subscriptions, () => this.room(), (subscription, id, fields) => this.runner.take(subscription, id, fields, true));
  }

  /**
   * This process's consumer name in its groups (`XINFO CONSUMERS`, `XPENDING`): its `instanceId`,
   * `@`, and 8 hexadecimal characters drawn when the process created this consumer. The names an
   * earlier process of the same instance left behind are removed once they hold nothing (`pruneNames`).
   */
  get consumerName(): string {
    return this.context.name;
  }

  /** Entries this instance holds now (running, waiting to retry, or waiting for their turn). */
  get holding(): number {
    return this.held.size;
  }

  /** Each group's backlog (lag, pending, oldest pending age) as last sampled; sampled every claimInterval, at least a second apart. */
  get backlog(): readonly DurableBacklog[] {
    return this.sampler.backlog;
  }

  /** Each group this instance consumes, with its retries and dead letters here (they only grow). */
  get groups(): ReadonlyArray<{ readonly pattern: string; readonly group: string; readonly retried: number; readonly deadLettered: number }> {
    return this.subscriptions;
  }

  /** Samples each group's backlog now. */
  sampleBacklog(): Promise<readonly DurableBacklog[]> {
    return this.sampler.sample();
  }

  /** Connects, creates missing consumer groups, and starts reading, claiming, renewing and trimming. */
  async start(): Promise<void> {
    const connection = { redis: this.options.redis, cluster: this.options.cluster, connectTimeout: this.options.connectTimeout, offlineQueue: true };
    let turns: Redis | undefined;
    const { namespace, durable } = this.options;
    const first = this.subscriptions[0]?.keys.stream ?? `${namespace}:durable:*`;
    // Every refusal of the start-up is a RedisPermissionError naming what to grant.
    const permitted = <T>(sent: string, send: () => Promise<T>): Promise<T> => withPermissionCheck(send, namespace, 'consumer', sent, first);
    try {
      this.command = await openDurableConnection({ ...connection, connectionName: `rb-durable:${this.options.instanceId}` });
      const command = this.command;
      await checkDurablePermissions(command, namespace, 'consumer', this.consumerName, this.subscriptions, durable.maxLength > 0 || durable.maxAge !== undefined);
      command.on('ready', () => this.leases.onReconnected());
      this.blocking = await StreamWaiter.open({ ...connection, connectionName: `rb-durable-read:${this.options.instanceId}` });
      turns = await openDurableConnection({ ...connection, connectionName: `rb-durable-turns:${this.options.instanceId}` });
      const subscriber = turns;
      await permitted('SUBSCRIBE', () => this.gate.open(subscriber, this.subscriptions));
      const bind = (): Promise<number> =>
        permitted('EVALSHA (the bind script)', () => bindPatterns(command, namespace, this.subscriptions.filter((subscription) => subscription.wildcard).map((subscription) => subscription.pattern)));
      const reader = new DurableReader(this.context, this.subscriptions, this.blocking, () => this.room(), (subscription, id, fields, fetchedAt, sizeInRedis) => this.runner.take(subscription, id, fields, false, fetchedAt, sizeInRedis), bind);
      this.reader = reader;
      await permitted('XGROUP CREATE', () => reader.ensureGroups());
      await permitted('HGETALL / HSET (the settings hash)', () => reader.checkSettings());
      // After the groups exist (an entry routed to a binding's stream is never missed by its group)
      // and before start resolves (a publish that starts after it routes to this binding).
      await bind();
    } catch (error) {
      // Leave no connection retrying behind a failed start: the process must be able to exit.
      this.command?.disconnect();
      this.blocking?.disconnect();
      turns?.disconnect();
      throw error;
    }
    this.intervals.push(setInterval(() => void this.leases.claimAll(), durable.claimInterval));
    this.renewing = setInterval(() => void this.leases.renewAll(), Math.max(10, Math.floor(durable.claimIdle / 3)));
    this.intervals.push(setInterval(() => void this.sampler.sample(), Math.max(MIN_SAMPLE_MS, durable.claimInterval)));
    if (durable.maxLength > 0 || durable.maxAge !== undefined) this.intervals.push(setInterval(() => void this.trimAll(), durable.trimInterval));
    this.intervals.push(setInterval(() => void this.pruneNames(), this.pruneIdle()));
    void this.leases.claimAll();
    void this.pruneNames();
    this.reader.start();
  }

  /**
   * Stops reading and claiming; entries waiting for a retry or their turn are released at once,
   * running handlers get `shutdownTimeout` ms to finish (and are acknowledged); those still running
   * then are told to stop and left to their leases (claimable after `claimIdle`), never released
   * while they may still run.
   */
  async close(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const interval of this.intervals) clearInterval(interval);
    this.reader?.wakeUp();
    // Ends a blocked XREAD at once.
    this.blocking?.disconnect();
    this.gate.close();
    const deadline = Date.now() + this.options.shutdownTimeout;
    // With Redis away, commands wait in the offline queue: never let them hold shutdown past its bound.
    const bounded = (work: Promise<unknown>, atLeastMs = 0): Promise<void> => within(work, Math.max(atLeastMs, deadline - Date.now()));
    // With Redis away the read loop is waiting to reconnect, and nothing it could still do would
    // reach Redis: do not hold the shutdown for it.
    const reachable = this.command?.status === 'ready';
    let readStopped = false;
    const reader = (this.reader?.stopped() ?? Promise.resolve()).then(() => (readStopped = true), () => (readStopped = true));
    const state = this.reader?.state;
    // A read loop blocked in XREAD holds nothing (it only waits to be woken); ioredis may not
    // settle that command once its connection is closed, so it is not waited for either.
    await (reachable && state !== 'blocking' ? bounded(reader) : within(reader, 200));
    if (!readStopped && reachable && state !== 'blocking') this.logger.warn(`The durable read loop had not stopped after shutdownTimeout (${this.options.shutdownTimeout} ms); it was ${this.reader?.state}.`);
    const idle = [...this.held.values()].filter((held) => !held.running);
    for (const held of idle) clearTimeout(held.timer);
    await bounded(this.leases.release(idle));
    while (this.held.size > 0 && Date.now() < deadline) await sleep(10);
    if (this.held.size > 0) {
      const left = [...this.held.values()];
      const running = left.filter((held) => held.running);
      // A handler still running is not handed back: another instance would start the entry (and the
      // next of its key) while this one may still be running it. It is told to stop, and its entry
      // is left to its lease, which is no longer renewed: claimable after claimIdle, by when a
      // process that closes to exit is gone.
      clearInterval(this.renewing);
      for (const held of running) held.abort.abort();
      if (running.length > 0) {
        this.logger.warn(
          `${running.length} durable handlers were still running after shutdownTimeout (${this.options.shutdownTimeout} ms); they were told to stop (getSignal()), and their entries are left to their leases: another instance runs them again after claimIdle (${this.options.durable.claimIdle} ms).`,
        );
      }
      const waiting = left.filter((held) => !held.running);
      for (const held of waiting) clearTimeout(held.timer);
      await bounded(this.leases.release(waiting), RELEASE_GRACE_MS);
    }
    clearInterval(this.renewing);
    await closeDurableConnection(this.command, 200);
  }

  /**
   * Removes from every group the consumer names of this instance's earlier processes (and the bare
   * `instanceId` earlier versions consumed under) that hold no pending entry and have been idle for
   * twice `claimIdle` (at least 1 s): what they held was claimed by then. Runs at start and then as
   * often; returns how many names it removed. The check and the removal are one step in Redis (the
   * prune script), so a name never loses an entry it reads meanwhile.
   */
  async pruneNames(): Promise<number> {
    const command = this.command;
    if (command === undefined || this.stopping) return 0;
    let pruned = 0;
    for (const { keys, group } of this.subscriptions) {
      try {
        pruned += await command.rbDurablePrune(keys.stream, group, this.context.name, this.options.instanceId, this.pruneIdle());
      } catch (error) {
        // The stream or group is gone (a Redis that lost its data): no names to remove; the read loop recreates them.
        if (/no such key|NOGROUP/i.test((error as Error)?.message ?? '')) continue;
        this.context.redisError(`removing earlier consumer names from group "${group}"`, error);
      }
    }
    this.stats.namesPruned += pruned;
    return pruned;
  }

  private pruneIdle(): number {
    return Math.max(MIN_PRUNE_IDLE_MS, 2 * this.options.durable.claimIdle);
  }

  /** Trims every stream this instance reads, now (it also runs every `trimInterval`). */
  async trimAll(): Promise<void> {
    const command = this.command;
    if (command === undefined || this.stopping) return;
    for (const stream of new Set(this.subscriptions.map((subscription) => subscription.keys.stream))) {
      try {
        const result = await trimStream(command, stream, this.options.durable);
        this.stats.trimmed += result.trimmed;
      } catch (error) {
        this.context.redisError(`trimming "${stream}"`, error);
      }
    }
  }

  /** Entries the reader or the claimer may take now. */
  private room(): number {
    return this.options.durable.maxInFlight - this.held.size;
  }
}

/** How a subscription matches topics; a malformed wildcard pattern throws `TopicPatternError` here, before anything starts. */
function topicOf(pattern: string): { matches: (topic: string) => boolean; wildcard: boolean } {
  if (!isWildcardPattern(pattern)) return { matches: (topic) => topic === pattern, wildcard: false };
  const compiled = new TopicPattern(pattern);
  return { matches: (topic) => compiled.matches(topic), wildcard: true };
}
