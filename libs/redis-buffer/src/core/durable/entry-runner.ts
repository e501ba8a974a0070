import { BufferErrorCode } from '../errors/buffer.error.js';
import { encodeDeadLetter } from './dead-letter.js';
import type { DurableDelivery } from './durable-delivery.js';
import type { DurableEntry } from './durable-entry.js';
import { admitEntry } from './entry-admission.js';
import { handledMarkers } from './entry-signing.js';
import { headersMatch, retryDelayAfter } from './durable-options.js';
import { keysThenArgs } from './durable-scripts.js';
import { handledKeyOf, keyOf, type ConsumerContext, type Held, type Subscription } from './held-entries.js';
import type { KeyGate } from './key-gate.js';
import { ISOLATE_FROM, SuspectQueue } from './suspect-queue.js';

/**
 * The life of one entry on this instance, from taken to let go: begin (ordering, idempotency and
 * attempt checks in Redis), run the handler, then acknowledge, retry after a backoff, or
 * dead-letter past `maxAttempts`.
 */
export class EntryRunner {
  private readonly suspects: SuspectQueue;
  private gate!: KeyGate;

  constructor(private readonly context: ConsumerContext) {
    this.suspects = new SuspectQueue(context, (held) => this.process(held));
  }

  /** The key gate this runner waits on (built after the runner: each calls the other). */
  useGate(gate: KeyGate): void {
    this.gate = gate;
  }

  /**
   * Starts handling an entry read (`claimed` false) or claimed from a stopped instance.
   * `sizeInRedis`: set when the FETCH script found it over maxPayloadBytes and sent only its small fields.
   */
  take(subscription: Subscription, id: string, fields: string[], claimed: boolean, leaseFrom = Date.now(), sizeInRedis?: number): void {
    const { context } = this;
    if (context.held.has(subscription, id)) return;
    const admitted = admitEntry(subscription.keys.stream, fields, context.options.maxPayloadBytes, context.signer, sizeInRedis);
    const { entry } = admitted;
    const held: Held = {
      subscription,
      id,
      fields: admitted.fields,
      entry,
      refusal: admitted.refusal,
      handled: typeof entry === 'string' || entry.idempotencyKey === undefined ? undefined : handledMarkers(subscription.keys, subscription.group, entry.idempotencyKey, context.signer),
      token: `${this.context.name}/${id}`,
      attempt: 0,
      suspect: claimed,
      isolate: false,
      running: false,
      timer: undefined,
      waits: 0,
      waitingTurn: false,
      lastError: undefined,
      abort: new AbortController(),
      leaseFrom,
      staleAttempt: undefined,
    };
    this.context.held.add(held);
    this.resume(held);
  }

  /** Continues an entry after a wait: isolated ones through their queue, others at once. */
  resume(held: Held): void {
    held.timer = undefined;
    held.waitingTurn = false;
    if (held.isolate) this.suspects.enqueue(held);
    else void this.process(held);
  }

  private async process(held: Held): Promise<void> {
    held.timer = undefined;
    const { context } = this;
    const { subscription } = held;
    if (context.stopping() || !this.stillHeld(held)) return;
    try {
      const entry = held.entry;
      // An entry naming a topic its stream's pattern does not match was written to the wrong stream
      // by hand or by another tool: this handler was not written for it.
      if (typeof entry === 'string' || !subscription.matches(entry.pattern)) {
        const problem = typeof entry === 'string' ? entry : `it names pattern ${JSON.stringify(entry.pattern)}, which its stream's pattern does not match`;
        const reason = held.refusal ?? 'malformed';
        return await this.deadLetter(held, { code: BufferErrorCode.BadEntry, reason, message: `Entry ${held.id} of "${subscription.pattern}" cannot be run (${reason}): ${problem}. See docs/protocol.md.` });
      }
      if (entry.group !== undefined && entry.group !== subscription.group) {
        await this.ack(held, false);
        context.stats.skipped++;
        return context.held.finish(held);
      }
      if (!headersMatch(subscription.options.headers, entry.headers)) {
        await this.ack(held, false);
        context.stats.filtered++;
        return context.held.finish(held);
      }
      const askedAt = this.isFresh(held, entry) ? held.leaseFrom : Date.now();
      const [gate, started, headId, headFields] = await this.begin(held, entry);
      if (gate === 'lost' || gate === 'gone') {
        if (gate === 'lost') context.stats.lost++;
        return context.held.finish(held);
      }
      if (gate === 'claimed') {
        // The key's head was orphaned: it is now this instance's, and runs before this entry.
        context.stats.claimed++;
        this.take(subscription, headId!, headFields!, true);
        this.gate.wait(held, true);
        this.suspects.leave(held);
        return;
      }
      if (gate === 'done') {
        await this.ack(held, false);
        context.stats.duplicates++;
        return context.held.finish(held);
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
        this.gate.wait(held, gate === 'wait');
        this.suspects.leave(held);
        return;
      }
      held.attempt = Number(started);
      // The grant reset the entry's idle time when Redis ran it, after askedAt: until claimIdle after
      // askedAt no other consumer can have claimed it. A grant that comes back much later (this
      // process was frozen or starved meanwhile) may be stale: started now, it could overlap the
      // claimer's run, or start a key's entry after its successors. Ask again instead.
      if (Date.now() - askedAt >= this.context.options.durable.claimIdle / 2) {
        context.stats.staleGrants++;
        // Its attempt was counted and never used: the next grant reuses it, if no one ran it since.
        held.staleAttempt = held.attempt;
        void this.process(held);
        return;
      }
      held.staleAttempt = undefined;
      // Let go while BEGIN was on its way (released by close(), or found lost by a renewal): the
      // grant is for an entry this instance no longer holds, without a lease, possibly claimable
      // at once by another instance. Whoever holds it now starts it; the attempt the grant
      // counted is spent, as when an instance dies between its grant and its handler.
      if (!this.stillHeld(held)) return;
      await this.run(held, entry);
    } catch (error) {
      // A Redis command failed. The entry is still pending in Redis: once this instance stops
      // renewing it, the group claims it again after claimIdle (here or elsewhere).
      context.redisError(`handling entry ${held.id} of "${subscription.pattern}"`, error);
      context.held.finish(held);
    }
  }

  /** Whether this very entry is still held here (not let go, nor replaced by a later take of the same id). */
  private stillHeld(held: Held): boolean {
    return this.context.held.get(held.subscription, held.id) === held;
  }

  /**
   * A fresh entry without key or idempotency key had its first attempt counted by the read script
   * (the same rule there): nothing can hold it back, so it starts without a round trip.
   */
  private isFresh(held: Held, entry: DurableEntry): boolean {
    return held.attempt === 0 && !held.suspect && entry.key === undefined && entry.idempotencyKey === undefined;
  }

  /** Asks Redis whether the entry may start now (the BEGIN script), counting the attempt if so. */
  private begin(held: Held, entry: DurableEntry): Promise<[string, number | string, string?, string[]?]> {
    if (this.isFresh(held, entry)) return Promise.resolve(['run', 1]);
    const { keys, group, options } = held.subscription;
    const isolateFrom = held.suspect && !this.suspects.isRunning(held) ? ISOLATE_FROM : 0;
    return this.context.command().rbDurableBegin(
      ...keysThenArgs(
        [keys.stream, keys.attempts(group), keys.order(group)],
        held.handled ?? [],
        [group, held.id, entry.key ?? '', held.token, this.context.options.durable.claimIdle, options.maxAttempts, isolateFrom, this.context.name, held.staleAttempt ?? ''],
      ),
    );
  }

  private async run(held: Held, entry: DurableEntry): Promise<void> {
    const { context } = this;
    const { subscription } = held;
    held.running = true;
    context.stats.runs++;
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
    this.suspects.leave(held);
    if (failure === undefined) {
      context.stats.succeeded++;
      const acked = await this.ack(held, true);
      if (acked === 1) context.stats.handled++;
      else {
        context.stats.lateAcksRefused++;
        if (acked === 0) context.stats.duplicatesRun++;
        this.context.logger.warn(
          `Entry ${held.id} of "${subscription.pattern}" (group "${subscription.group}") ran to success here, but ${acked === 0 ? 'it had already been acknowledged' : 'another consumer had claimed it'} meanwhile (this instance was frozen or cut off past claimIdle): its acknowledgement was refused.`,
        );
      }
      return context.held.finish(held);
    }
    context.stats.failed++;
    held.lastError = failure.error;
    if (held.attempt >= subscription.options.maxAttempts) return await this.deadLetter(held, failure.error);
    // Shutting down: close() releases it, and the attempt already counted.
    if (context.stopping()) return;
    held.timer = setTimeout(() => void this.retry(held), retryDelayAfter(held.attempt, subscription.options));
  }

  /** Acknowledges; `markDone` also remembers the idempotency key as handled in this group. */
  private ack(held: Held, markDone: boolean): Promise<number> {
    const { keys, group } = held.subscription;
    return this.context.command().rbDurableAck(
      ...keysThenArgs(
        [keys.stream, keys.attempts(group), keys.order(group)],
        [markDone ? handledKeyOf(held) : undefined],
        [group, held.id, keyOf(held) ?? '', this.context.options.durable.idempotencyWindow, keys.turnChannel(group), this.context.name],
      ),
    );
  }

  private async retry(held: Held): Promise<void> {
    held.timer = undefined;
    const { context } = this;
    if (context.stopping()) return;
    const { keys, group } = held.subscription;
    try {
      if ((await context.command().rbDurableRetry(keys.stream, group, context.name, held.id)) === null) {
        // Claimed by another instance meanwhile (or gone): it is theirs now.
        return context.held.finish(held);
      }
      held.waits = 0;
      context.stats.retried++;
      held.subscription.retried++;
    } catch (error) {
      context.redisError(`retrying entry ${held.id}`, error);
      return context.held.finish(held);
    }
    await this.process(held);
  }

  private async deadLetter(held: Held, error: unknown): Promise<void> {
    const { context } = this;
    const { keys, group } = held.subscription;
    const fields = encodeDeadLetter({ entryId: held.id, group, attempts: held.attempt, error, consumer: context.options.instanceId, failedAt: Date.now(), fields: held.fields });
    const id = await context.command().rbDurableDeadLetter(
      ...keysThenArgs(
        [keys.stream, keys.deadLetters(group), keys.attempts(group), keys.order(group)],
        [handledKeyOf(held)],
        [group, held.id, keyOf(held) ?? '', held.token, keys.turnChannel(group), context.name, ...fields],
      ),
    );
    if (id !== null) {
      context.stats.deadLettered++;
      if (held.refusal === 'oversized') context.stats.oversized++;
      else if (held.refusal === 'unsigned' || held.refusal === 'forged') context.stats.forged++;
      held.subscription.deadLettered++;
      const reason = (error as { code?: unknown } | null)?.code === BufferErrorCode.BadEntry ? `unrun: ${(error as { message: string }).message}` : `after ${held.attempt} attempts.`;
      context.logger.warn(`Entry ${held.id} of "${held.subscription.pattern}" moved to the dead-letter stream of group "${group}" ${reason}`);
    } else {
      context.stats.lost++;
    }
    context.held.finish(held);
  }

  private deliveryOf(held: Held, entry: DurableEntry): DurableDelivery {
    return {
      entryId: held.id,
      pattern: entry.pattern,
      binding: held.subscription.pattern,
      group: held.subscription.group,
      attempt: held.attempt,
      maxAttempts: held.subscription.options.maxAttempts,
      data: entry.data,
      headers: entry.headers,
      key: entry.key,
      idempotencyKey: entry.idempotencyKey,
      from: entry.from,
      publishedAt: entry.publishedAt,
      consumer: this.context.options.instanceId,
      signal: held.abort.signal,
    };
  }
}
