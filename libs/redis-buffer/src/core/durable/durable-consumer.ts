import type { Redis } from 'ioredis';
import { BufferErrorCode } from '../errors/buffer.error.js';
import type { BufferHeaders } from '../wire/envelope.js';
import { BoundedLog, type BufferLogger } from '../logger.js';
import type { ResolvedBufferOptions } from '../options.js';
import { encodeDeadLetter } from './dead-letter.js';
import { closeDurableConnection, DurableReader, openDurableConnection } from './durable-connection.js';
import { decodeEntry, type DurableEntry } from './durable-entry.js';
import { DurableKeys } from './durable-keys.js';
import { retryDelayAfter, type ResolvedDurableHandlerOptions, type ResolvedDurableOptions } from './durable-options.js';
import type { DurableScripts } from './durable-scripts.js';
import { trimStream } from './retention.js';

/** One entry handed to a handler. */
export interface DurableDelivery {
  /** The entry's id in the stream (`<ms>-<seq>`): stable across retries and instances. */
  readonly entryId: string;
  readonly pattern: string;
  readonly group: string;
  /** 1 for the first delivery; a delivery that never finished (crash) counts. */
  readonly attempt: number;
  readonly maxAttempts: number;
  readonly data: unknown;
  readonly headers: BufferHeaders;
  readonly key: string | undefined;
  readonly idempotencyKey: string | undefined;
  /** Publisher's instance id, when it said. */
  readonly from: string | undefined;
  /** Publication time, ms since the epoch, when the publisher said. */
  readonly publishedAt: number | undefined;
  /** The instance running it. */
  readonly consumer: string;
}

/** Runs a handler: resolves when it succeeded, rejects with what it failed with. */
export type DurableRun = (delivery: DurableDelivery) => Promise<void>;

export interface DurableSubscription {
  readonly pattern: string;
  readonly options: ResolvedDurableHandlerOptions;
  readonly run: DurableRun;
}

/** Counters for monitoring one instance's durable handlers; they only ever grow. */
export interface DurableConsumerStats {
  /** New entries read from the streams. */
  received: number;
  /** Entries claimed from an instance that stopped renewing them (crashed, frozen, or shut down). */
  claimed: number;
  /** Handler runs that succeeded and were acknowledged. */
  handled: number;
  /** Handler runs that failed. */
  failed: number;
  /** Attempts started after a failure. */
  retried: number;
  deadLettered: number;
  /** Entries acknowledged without running: their idempotency key had already succeeded in this group. */
  duplicates: number;
  /** Replayed entries meant for another group, acknowledged without running. */
  skipped: number;
  /** Entries handed back to the group at shutdown (or on a Redis error) without finishing. */
  released: number;
  /** Pending entries found deleted from the stream (by an XTRIM that ignored consumer groups). */
  deletedWhilePending: number;
  /** Entries removed by retention trimming. */
  trimmed: number;
  redisErrors: number;
}

export type DurableConsumerOptions = Pick<ResolvedBufferOptions, 'redis' | 'cluster' | 'namespace' | 'instanceId' | 'connectTimeout' | 'shutdownTimeout'> & {
  readonly durable: ResolvedDurableOptions;
};

interface Subscription extends DurableSubscription {
  readonly keys: DurableKeys;
  readonly group: string;
  /** XAUTOCLAIM's cursor. */
  claimCursor: string;
}

interface Held {
  readonly subscription: Subscription;
  readonly id: string;
  readonly fields: string[];
  readonly entry: DurableEntry | string;
  /** Lease token of the idempotency key: unique to this entry on this instance. */
  readonly token: string;
  /** Handler runs started, this one included (counted in Redis, across instances). */
  attempt: number;
  /** Claimed from an instance that stopped, and has not run to an end here yet. */
  suspect: boolean;
  /** Runs only when no other isolated entry runs (see `pumpSuspects`). */
  isolate: boolean;
  running: boolean;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** Rounds spent waiting for an earlier same-key entry or a running duplicate. */
  waits: number;
  /** Polling for its key's turn: an acknowledgement of that key may wake it early. */
  waitingTurn: boolean;
  lastError: unknown;
}

/** How long one XREAD waits for new entries before looking again. */
const BLOCK_MS = 5000;
/** Pause after a failed Redis command before the read loop tries again. */
const ERROR_PAUSE_MS = 250;
/** At shutdown, how long releasing the handlers still running may take once shutdownTimeout has passed. */
const RELEASE_GRACE_MS = 1000;
/** A claimed entry that started this many times without finishing runs isolated (see `pumpSuspects`). */
const ISOLATE_FROM = 2;
/** Polling for an entry's turn (same key, held by another instance) or a duplicate's outcome: 10 ms doubling to this. */
const MAX_WAIT_POLL_MS = 250;

/**
 * Consumes the streams of one instance's `@DurablePattern` handlers (no Nest import: the transport
 * hands it a `run` function per handler).
 *
 * - Reads new entries for each group with XREADGROUP (inside a script that also registers keyed
 *   entries for ordering), at most `maxInFlight` held at once; when nothing is new it blocks in
 *   XREAD on a second connection until something is.
 * - Counts each handler run as it starts (a hash per group, in the same script that checks ordering
 *   and idempotency) and acknowledges an entry only after its handler succeeded. A failure is
 *   retried after a backoff (XCLAIM by itself, if it still owns the entry); past `maxAttempts` runs
 *   the entry goes to the group's dead-letter stream, acknowledged in the same script.
 * - Renews what it holds every `claimIdle / 3` (XCLAIM … JUSTID resets the idle time), and claims
 *   entries idle longer than `claimIdle` from instances that stopped renewing (XAUTOCLAIM); those
 *   run one at a time until each has run to an end once (see `pumpSuspects`).
 * - On close it stops reading, lets running handlers finish for `shutdownTimeout`, and releases the
 *   rest (their idle time is set to `claimIdle`, so another instance claims them at its next look).
 */
export class DurableConsumer {
  readonly stats: DurableConsumerStats = {
    received: 0,
    claimed: 0,
    handled: 0,
    failed: 0,
    retried: 0,
    deadLettered: 0,
    duplicates: 0,
    skipped: 0,
    released: 0,
    deletedWhilePending: 0,
    trimmed: 0,
    redisErrors: 0,
  };
  private readonly subscriptions: Subscription[];
  private readonly held = new Map<string, Held>();
  private readonly lastSeen = new Map<string, string>();
  private readonly errors: BoundedLog;
  private command: (Redis & DurableScripts) | undefined;
  private blocking: DurableReader | undefined;
  /** Subscribed to the groups' turn channels (see DurableKeys.turnChannel). */
  private turns: Redis | undefined;
  private stopping = false;
  private readLoop: Promise<void> | undefined;
  // What the read loop is waiting for, for the shutdown's report when it does not stop in time.
  private reading: 'idle' | 'full' | 'fetching' | 'blocking' | 'pausing' = 'idle';
  private wakeReader: (() => void) | undefined;
  private readonly intervals: Array<ReturnType<typeof setInterval>> = [];
  private claiming = false;
  /** When the command connection last came back after a loss (0: never lost). */
  private reconnectedAt = 0;
  private readonly suspects: Held[] = [];
  private isolated: Held | undefined;
  private touching = false;

  constructor(
    private readonly options: DurableConsumerOptions,
    subscriptions: readonly DurableSubscription[],
    private readonly logger: BufferLogger,
  ) {
    this.subscriptions = subscriptions.map((subscription) => ({
      ...subscription,
      keys: new DurableKeys(options.namespace, subscription.pattern),
      group: subscription.options.group,
      claimCursor: '0-0',
    }));
    this.errors = new BoundedLog(logger, 5, 30_000);
  }

  get consumerName(): string {
    return this.options.instanceId;
  }

  /** Entries this instance holds now (running, waiting to retry, or waiting for their turn). */
  get holding(): number {
    return this.held.size;
  }

  /** Connects, creates missing consumer groups, and starts reading, claiming, renewing and trimming. */
  async start(): Promise<void> {
    const connection = { redis: this.options.redis, cluster: this.options.cluster, connectTimeout: this.options.connectTimeout, offlineQueue: true };
    try {
      this.command = await openDurableConnection({ ...connection, connectionName: `rb-durable:${this.consumerName}` });
      this.command.on('ready', () => this.onReconnected());
      this.blocking = await DurableReader.open({ ...connection, connectionName: `rb-durable-read:${this.consumerName}` });
      this.turns = await openDurableConnection({ ...connection, connectionName: `rb-durable-turns:${this.consumerName}` });
      this.turns.on('message', (_channel: string, orderKey: string) => this.onTurn(orderKey));
      await this.turns.subscribe(...new Set(this.subscriptions.map((subscription) => subscription.keys.turnChannel(subscription.group))));
      await this.ensureGroups();
    } catch (error) {
      // Leave no connection retrying behind a failed start: the process must be able to exit.
      this.command?.disconnect();
      this.blocking?.disconnect();
      this.turns?.disconnect();
      throw error;
    }
    const { durable } = this.options;
    this.intervals.push(setInterval(() => void this.claimAll(), durable.claimInterval));
    this.intervals.push(setInterval(() => void this.renewAll(), Math.max(10, Math.floor(durable.claimIdle / 3))));
    if (durable.maxLength > 0 || durable.maxAge !== undefined) this.intervals.push(setInterval(() => void this.trimAll(), durable.trimInterval));
    void this.claimAll();
    this.readLoop = this.read();
  }

  /**
   * Stops reading and claiming; entries waiting for a retry or their turn are released at once,
   * running handlers get `shutdownTimeout` ms to finish (and are acknowledged), the rest are released.
   */
  async close(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const interval of this.intervals) clearInterval(interval);
    this.wakeReader?.();
    // Ends a blocked XREAD at once.
    this.blocking?.disconnect();
    this.turns?.disconnect();
    const deadline = Date.now() + this.options.shutdownTimeout;
    // With Redis away, commands wait in the offline queue: never let them hold shutdown past its bound.
    const bounded = (work: Promise<unknown>, atLeastMs = 0): Promise<unknown> =>
      Promise.race([work.catch(() => undefined), sleep(Math.max(atLeastMs, deadline - Date.now()))]);
    // With Redis away the read loop is waiting to reconnect, and nothing it could still do would
    // reach Redis: do not hold the shutdown for it.
    const reachable = this.command?.status === 'ready';
    let readStopped = false;
    const reader = (this.readLoop ?? Promise.resolve()).then(() => (readStopped = true), () => (readStopped = true));
    // A read loop blocked in XREAD holds nothing (it only waits to be woken); ioredis may not
    // settle that command once its connection is closed, so it is not waited for either.
    await (reachable && this.reading !== 'blocking' ? bounded(reader) : Promise.race([reader, sleep(200)]));
    if (!readStopped && reachable && this.reading !== 'blocking') this.logger.warn(`The durable read loop had not stopped after shutdownTimeout (${this.options.shutdownTimeout} ms); it was ${this.reading}.`);
    const idle = [...this.held.values()].filter((held) => !held.running);
    for (const held of idle) clearTimeout(held.timer);
    await bounded(this.release(idle));
    while (this.held.size > 0 && Date.now() < deadline) await sleep(10);
    if (this.held.size > 0) {
      this.logger.warn(`Released ${this.held.size} durable entries whose handlers were still running after shutdownTimeout (${this.options.shutdownTimeout} ms); another instance will run them again.`);
      await bounded(this.release([...this.held.values()]), RELEASE_GRACE_MS);
    }
    await closeDurableConnection(this.command, 200);
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
        this.redisError(`trimming "${stream}"`, error);
      }
    }
  }

  private async ensureGroups(): Promise<void> {
    const start = this.options.durable.newGroupStartsAt === 'beginning' ? '0' : '$';
    for (const subscription of this.subscriptions) {
      try {
        await this.command!.xgroup('CREATE', subscription.keys.stream, subscription.group, start, 'MKSTREAM');
      } catch (error) {
        if (!(error instanceof Error && error.message.startsWith('BUSYGROUP'))) throw error;
      }
      if (!this.lastSeen.has(subscription.keys.stream)) this.lastSeen.set(subscription.keys.stream, '0-0');
    }
  }

  private async read(): Promise<void> {
    let first = 0;
    while (!this.stopping) {
      try {
        if (this.held.size >= this.options.durable.maxInFlight) {
          this.reading = 'full';
          await new Promise<void>((resolve) => (this.wakeReader = resolve));
          continue;
        }
        let fetched = 0;
        // Start from a different subscription each round, so a busy one cannot starve the others.
        for (let index = 0; index < this.subscriptions.length && !this.stopping; index++) {
          const subscription = this.subscriptions[(first + index) % this.subscriptions.length]!;
          const room = this.options.durable.maxInFlight - this.held.size;
          if (room <= 0) break;
          const { keys, group } = subscription;
          this.reading = 'fetching';
          const [entries, last] = await this.command!.rbDurableFetch(keys.stream, group, this.consumerName, room, keys.orderPrefix(group), keys.attempts(group));
          this.lastSeen.set(keys.stream, last);
          this.stats.received += entries.length;
          fetched += entries.length;
          for (const [id, fields] of entries) this.take(subscription, id, fields, false);
        }
        first++;
        if (fetched === 0 && !this.stopping) {
          const streams = [...this.lastSeen.keys()];
          this.reading = 'blocking';
          await this.blocking!.read(streams, streams.map((stream) => this.lastSeen.get(stream)!), BLOCK_MS);
        }
      } catch (error) {
        if (this.stopping) break;
        this.redisError('reading', error);
        if (error instanceof Error && error.message.startsWith('NOGROUP')) await this.ensureGroups().catch(() => undefined);
        this.reading = 'pausing';
        await sleep(ERROR_PAUSE_MS);
      }
    }
  }

  private take(subscription: Subscription, id: string, fields: string[], claimed: boolean): void {
    const heldKey = this.heldKey(subscription, id);
    if (this.held.has(heldKey)) return;
    const held: Held = {
      subscription,
      id,
      fields,
      entry: decodeEntry(fields),
      token: `${this.consumerName}/${id}`,
      attempt: 0,
      suspect: claimed,
      isolate: false,
      running: false,
      timer: undefined,
      waits: 0,
      waitingTurn: false,
      lastError: undefined,
    };
    this.held.set(heldKey, held);
    this.resume(held);
  }

  private async process(held: Held): Promise<void> {
    held.timer = undefined;
    if (this.stopping) return;
    const { subscription } = held;
    const { keys, group } = subscription;
    try {
      const entry = held.entry;
      if (typeof entry === 'string') {
        return await this.deadLetter(held, { code: BufferErrorCode.BadEntry, message: `Entry ${held.id} of "${subscription.pattern}" cannot be read: ${entry}. See docs/protocol.md.` });
      }
      if (entry.group !== undefined && entry.group !== group) {
        await this.command!.rbDurableAck(keys.stream, '', this.orderKey(held), keys.attempts(group), group, held.id, '', keys.turnChannel(group));
        this.stats.skipped++;
        return this.finish(held);
      }
      // A fresh entry without key or idempotency key had its first attempt counted by the read
      // script (the same rule there): nothing can hold it back, so it starts without a round trip.
      const counted = held.attempt === 0 && !held.suspect && entry.key === undefined && entry.idempotencyKey === undefined;
      const [gate, started] = counted
        ? (['run', 1] as const)
        : await this.command!.rbDurableBegin(
            keys.stream,
            this.handledKey(held),
            this.orderKey(held),
            keys.attempts(group),
            group,
            held.id,
            held.token,
            this.options.durable.claimIdle,
            subscription.options.maxAttempts,
            held.suspect && this.isolated !== held ? ISOLATE_FROM : 0,
          );
      if (gate === 'done') {
        await this.command!.rbDurableAck(keys.stream, '', this.orderKey(held), keys.attempts(group), group, held.id, '', keys.turnChannel(group));
        this.stats.duplicates++;
        return this.finish(held);
      }
      if (gate === 'exhausted') {
        held.attempt = Number(started);
        return await this.deadLetter(
          held,
          held.lastError ?? {
            code: BufferErrorCode.AttemptsExhausted,
            message: `Started ${held.attempt} times and never finished: each time, the instance running it crashed, froze or was stopped. Handle it by hand (it may crash its consumer), then replay it.`,
          },
        );
      }
      if (gate === 'isolate') {
        held.isolate = true;
        this.resume(held);
        return;
      }
      if (gate !== 'run') {
        held.waitingTurn = gate === 'wait';
        held.timer = setTimeout(() => this.resume(held), Math.min(MAX_WAIT_POLL_MS, 10 * 2 ** held.waits++));
        this.leaveIsolation(held);
        return;
      }
      held.attempt = Number(started);
      held.running = true;
      let failure: { error: unknown } | undefined;
      try {
        await subscription.run(this.deliveryOf(held, entry));
      } catch (error) {
        failure = { error };
      } finally {
        held.running = false;
      }
      // It ran to an end without taking the process down: no longer a suspect.
      held.suspect = false;
      held.isolate = false;
      this.leaveIsolation(held);
      if (failure === undefined) {
        await this.command!.rbDurableAck(keys.stream, this.handledKey(held), this.orderKey(held), keys.attempts(group), group, held.id, this.options.durable.idempotencyWindow, keys.turnChannel(group));
        this.stats.handled++;
        return this.finish(held);
      }
      this.stats.failed++;
      held.lastError = failure.error;
      if (held.attempt >= subscription.options.maxAttempts) return await this.deadLetter(held, failure.error);
      // Shutting down: close() releases it, and the attempt already counted.
      if (this.stopping) return;
      held.timer = setTimeout(() => void this.retry(held), retryDelayAfter(held.attempt, subscription.options));
    } catch (error) {
      // A Redis command failed. The entry is still pending in Redis: once this instance stops
      // renewing it, the group claims it again after claimIdle (here or elsewhere).
      this.redisError(`handling entry ${held.id} of "${subscription.pattern}"`, error);
      this.finish(held);
    }
  }

  /** Continues an entry after a wait: isolated ones through their queue, others at once. */
  private resume(held: Held): void {
    held.timer = undefined;
    held.waitingTurn = false;
    if (!held.isolate) {
      void this.process(held);
      return;
    }
    this.suspects.push(held);
    this.pumpSuspects();
  }

  /**
   * Claimed entries are suspects: the instance that held them stopped, and one of them may be what
   * killed it. A suspect that already started `ISOLATE_FROM` times without finishing runs alone
   * among such entries here, so a poison entry can then take down only itself and the fresh entries
   * beside it, and every other suspect reaches its own verdict (attempts count only runs that
   * really started). After a single crash, claimed entries still run in parallel: recovery from an
   * ordinary crash is not slowed down by one-at-a-time runs.
   */
  private pumpSuspects(): void {
    if (this.isolated !== undefined || this.stopping) return;
    const next = this.suspects.shift();
    if (next === undefined) return;
    this.isolated = next;
    void this.process(next);
  }

  private leaveIsolation(held: Held): void {
    if (this.isolated !== held) return;
    this.isolated = undefined;
    this.pumpSuspects();
  }

  private async retry(held: Held): Promise<void> {
    held.timer = undefined;
    if (this.stopping) return;
    const { keys, group } = held.subscription;
    try {
      if ((await this.command!.rbDurableRetry(keys.stream, group, this.consumerName, held.id)) === null) {
        // Claimed by another instance meanwhile (or gone): it is theirs now.
        return this.finish(held);
      }
      held.waits = 0;
      this.stats.retried++;
    } catch (error) {
      this.redisError(`retrying entry ${held.id}`, error);
      return this.finish(held);
    }
    await this.process(held);
  }

  private async deadLetter(held: Held, error: unknown): Promise<void> {
    const { keys, group } = held.subscription;
    const fields = encodeDeadLetter({
      entryId: held.id,
      group,
      attempts: held.attempt,
      error,
      consumer: this.consumerName,
      failedAt: Date.now(),
      fields: held.fields,
    });
    const id = await this.command!.rbDurableDeadLetter(keys.stream, keys.deadLetters(group), this.handledKey(held), this.orderKey(held), keys.attempts(group), group, held.id, held.token, keys.turnChannel(group), ...fields);
    if (id !== null) {
      this.stats.deadLettered++;
      this.logger.warn(`Entry ${held.id} of "${held.subscription.pattern}" moved to the dead-letter stream of group "${group}" after ${held.attempt} attempts.`);
    }
    this.finish(held);
  }

  /**
   * Back from a lost connection (a Redis restart, a network cut): renew what this instance holds at
   * once, and claim nothing for claimIdle. The other instances were probably cut off too, so their
   * entries look idle although they are still working on them; they get claimIdle to renew.
   */
  private onReconnected(): void {
    this.reconnectedAt = Date.now();
    void this.renewAll();
  }

  /** Claims entries that other instances (or this one, before a restart) stopped renewing. */
  private async claimAll(): Promise<void> {
    if (this.claiming || this.stopping || this.command === undefined) return;
    if (Date.now() - this.reconnectedAt < this.options.durable.claimIdle) return;
    this.claiming = true;
    try {
      for (const subscription of this.subscriptions) {
        const room = this.options.durable.maxInFlight - this.held.size;
        if (room <= 0 || this.stopping) break;
        const { keys, group } = subscription;
        const [cursor, entries, deleted] = (await this.command.xautoclaim(keys.stream, group, this.consumerName, this.options.durable.claimIdle, subscription.claimCursor, 'COUNT', room)) as [
          string,
          Array<[string, string[]] | null>,
          string[] | undefined,
        ];
        subscription.claimCursor = cursor;
        if (deleted !== undefined && deleted.length > 0) {
          this.stats.deletedWhilePending += deleted.length;
          this.logger.error(`${deleted.length} pending entries of "${subscription.pattern}" (group "${group}") were deleted from the stream before being handled (an XTRIM or XDEL outside this library?): ${deleted.slice(0, 5).join(', ')}${deleted.length > 5 ? '…' : ''}`);
        }
        const claimed = entries.filter((entry): entry is [string, string[]] => entry !== null && Array.isArray(entry[1]));
        if (claimed.length === 0) continue;
        for (const [id, fields] of claimed) {
          if (this.held.has(this.heldKey(subscription, id))) continue;
          this.stats.claimed++;
          this.take(subscription, id, fields, true);
        }
      }
    } catch (error) {
      this.redisError('claiming idle entries', error);
    } finally {
      this.claiming = false;
    }
  }

  /** Renews every entry held, so no other instance claims what this one is working on. */
  private async renewAll(): Promise<void> {
    if (this.touching || this.stopping || this.held.size === 0) return;
    this.touching = true;
    try {
      for (const [subscription, entries] of this.bySubscription([...this.held.values()])) {
        const lost = await this.touch(subscription, entries, 0, this.options.durable.claimIdle);
        for (const id of lost) {
          const held = this.held.get(this.heldKey(subscription, id));
          // Another instance claimed it while this one was frozen; a running handler still finishes.
          if (held !== undefined && !held.running) this.finish(held);
        }
      }
    } catch (error) {
      this.redisError('renewing held entries', error);
    } finally {
      this.touching = false;
    }
  }

  /** Hands entries back to the group: claimable by any instance at its next look. */
  private async release(entries: readonly Held[]): Promise<void> {
    if (entries.length === 0) return;
    // Let go here first: whether or not Redis hears of it, they are no longer this instance's
    // (unreleased, they are claimable after claimIdle anyway).
    for (const held of entries) this.finish(held);
    for (const [subscription, group] of this.bySubscription(entries)) {
      try {
        await this.touch(subscription, group, this.options.durable.claimIdle, 0);
        this.stats.released += group.length;
      } catch (error) {
        this.redisError('releasing held entries', error);
      }
    }
  }

  private touch(subscription: Subscription, entries: readonly Held[], idleMs: number, leaseMs: number): Promise<string[]> {
    const triples = entries.flatMap((held) => [held.id, this.handledKey(held), held.token]);
    return this.command!.rbDurableTouch(subscription.keys.stream, subscription.group, this.consumerName, idleMs, leaseMs, ...triples);
  }

  private bySubscription(entries: readonly Held[]): Map<Subscription, Held[]> {
    const groups = new Map<Subscription, Held[]>();
    for (const held of entries) {
      const list = groups.get(held.subscription);
      if (list === undefined) groups.set(held.subscription, [held]);
      else list.push(held);
    }
    return groups;
  }

  private finish(held: Held): void {
    clearTimeout(held.timer);
    held.timer = undefined;
    if (!this.held.delete(this.heldKey(held.subscription, held.id))) return;
    const queued = this.suspects.indexOf(held);
    if (queued >= 0) this.suspects.splice(queued, 1);
    this.leaveIsolation(held);
    // The next entry with this key may be waiting here: let it look now rather than at its next poll.
    const orderKey = this.orderKey(held);
    if (orderKey !== '') this.onTurn(orderKey);
    const wake = this.wakeReader;
    this.wakeReader = undefined;
    wake?.();
  }

  /** An entry with this order list's key was acknowledged (here or elsewhere): the next one held here may start. */
  private onTurn(orderKey: string): void {
    for (const other of this.held.values()) {
      if (other.waitingTurn && this.orderKey(other) === orderKey) {
        other.waitingTurn = false;
        clearTimeout(other.timer);
        other.timer = setTimeout(() => this.resume(other), 0);
      }
    }
  }

  private deliveryOf(held: Held, entry: DurableEntry): DurableDelivery {
    return {
      entryId: held.id,
      pattern: held.subscription.pattern,
      group: held.subscription.group,
      attempt: held.attempt,
      maxAttempts: held.subscription.options.maxAttempts,
      data: entry.data,
      headers: entry.headers,
      key: entry.key,
      idempotencyKey: entry.idempotencyKey,
      from: entry.from,
      publishedAt: entry.publishedAt,
      consumer: this.consumerName,
    };
  }

  private heldKey(subscription: Subscription, id: string): string {
    return `${subscription.keys.stream}\n${subscription.group}\n${id}`;
  }

  private handledKey(held: Held): string {
    const idempotencyKey = typeof held.entry === 'string' ? undefined : held.entry.idempotencyKey;
    return idempotencyKey === undefined ? '' : held.subscription.keys.handled(held.subscription.group, idempotencyKey);
  }

  private orderKey(held: Held): string {
    const key = typeof held.entry === 'string' ? undefined : held.entry.key;
    return key === undefined ? '' : held.subscription.keys.order(held.subscription.group, key);
  }

  private redisError(what: string, error: unknown): void {
    this.stats.redisErrors++;
    this.errors.warn(`Durable messaging: ${what} failed: ${(error as Error)?.message ?? String(error)}`);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
