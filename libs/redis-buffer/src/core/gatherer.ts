import type { Clock, TimerHandle } from './clock.js';
import type { ReplyEnvelope } from './envelope.js';
import { BufferTimeoutError } from './errors/buffer-timeout.error.js';
import { NoRespondersError } from './errors/no-responders.error.js';
import type { ResolvedCallOptions } from './options.js';
import type { BufferReply, CompletedBy, GatherResult } from './reply.js';

/** Receives what a gatherer decides. Exactly one of `complete` / `fail` is called, once. */
export interface GatherSink<T> {
  next(reply: BufferReply<T>): void;
  /** `timedOut` is set when `completedBy` is `'timeout'`: the error a stream-shaped caller raises. */
  complete(result: GatherResult<T>, timedOut?: BufferTimeoutError<T>): void;
  fail(error: Error, result: GatherResult<T>): void;
}

/** What `accept` did with a reply envelope; the caller counts these. */
export type AcceptOutcome = 'accepted' | 'duplicate' | 'late';

/**
 * The completion rules of one request, as a state machine with no I/O:
 * every receiver done (`expected` from Redis), `quorum`, `until`, `stall`, and `timeout` over them all.
 *
 * Replies may arrive before Redis has said how many instances received the request (the inbox and
 * the publisher are different connections), so "all" is evaluated whenever either side moves.
 */
export class Gatherer<T = unknown> {
  private expected: number | undefined;
  // Last sequence number seen per instance: Redis keeps one publisher's messages in order, so
  // anything at or below it is a duplicate. The first instance to reply is kept in two fields and
  // the others in a Map made on demand, and the reply arrays are made on the first reply: a
  // request waiting for its replies holds no empty collections (memory per request in flight).
  private firstFrom: string | undefined;
  private firstSeq = -1;
  private lastSeq: Map<string, number> | undefined;
  private finishedCount = 0;
  private replies: Array<Extract<BufferReply<T>, { ok: true }>> | undefined;
  private errors: Array<Extract<BufferReply<T>, { ok: false }>> | undefined;
  private arrived: Array<BufferReply<T>> | undefined;
  private timeoutTimer: TimerHandle | undefined;
  private stallTimer: TimerHandle | undefined;
  private ended = false;
  // A rule decided before Redis said how many received the request: completion waits for the count
  // (it is one round trip away), so every result says what it is partial against.
  private decided: CompletedBy | undefined;
  private readonly startedAt: number;

  constructor(
    readonly requestId: string,
    readonly pattern: string,
    private readonly rules: ResolvedCallOptions<T>,
    private readonly sink: GatherSink<T>,
    private readonly clock: Clock,
  ) {
    this.startedAt = clock.now();
    this.timeoutTimer = clock.setTimer(() => this.finish(this.decided ?? 'timeout'), rules.timeout);
  }

  get isEnded(): boolean {
    return this.ended;
  }

  /** The absolute deadline carried by the request. */
  get deadline(): number {
    return this.startedAt + this.rules.timeout;
  }

  /** Redis's count of receivers of the request. `0` fails at once with `NoRespondersError`. */
  expect(receivers: number): void {
    if (this.ended) return;
    this.expected = receivers;
    if (this.decided !== undefined) return this.finish(this.decided);
    if (receivers === 0) {
      this.end();
      this.sink.fail(new NoRespondersError(this.pattern, this.rules.to), this.result('all'));
      return;
    }
    this.checkAll();
  }

  accept(envelope: ReplyEnvelope): AcceptOutcome {
    if (this.ended || this.decided !== undefined) return 'late';
    if (this.firstFrom === undefined || this.firstFrom === envelope.from) {
      if (envelope.seq <= this.firstSeq) return 'duplicate';
      this.firstFrom = envelope.from;
      this.firstSeq = envelope.seq;
    } else {
      const lastSeq = (this.lastSeq ??= new Map<string, number>());
      const previous = lastSeq.get(envelope.from);
      if (previous !== undefined && envelope.seq <= previous) return 'duplicate';
      lastSeq.set(envelope.from, envelope.seq);
    }

    const hasError = Object.hasOwn(envelope, 'error');
    const hasData = !hasError && Object.hasOwn(envelope, 'data');
    if (hasData || hasError) {
      const reply: BufferReply<T> = hasError
        ? { ok: false, instanceId: envelope.from, seq: envelope.seq, error: envelope.error }
        : { ok: true, instanceId: envelope.from, seq: envelope.seq, data: envelope.data as T };
      if (reply.ok) (this.replies ??= []).push(reply);
      else (this.errors ??= []).push(reply);
      const arrived = (this.arrived ??= []);
      arrived.push(reply);
      this.sink.next(reply);
      // The sink may have cancelled us (an unsubscribe from inside `next`).
      if (this.ended) return 'accepted';
      if (this.rules.until?.(reply)) return this.decide('until'), 'accepted';
      if (this.rules.quorum !== undefined && arrived.length >= this.rules.quorum) return this.decide('quorum'), 'accepted';
      this.armStall();
    }
    if (envelope.done) {
      this.finishedCount++;
      this.checkAll();
    }
    return 'accepted';
  }

  /** Ends the request with an error (for example the connection was lost). */
  fail(error: Error): void {
    if (this.ended) return;
    this.end();
    this.sink.fail(error, this.result('timeout'));
  }

  /** Stops every timer without telling the sink: the caller unsubscribed. */
  cancel(): void {
    this.end();
  }

  result(completedBy: CompletedBy): GatherResult<T> {
    return {
      replies: (this.replies ??= []),
      errors: (this.errors ??= []),
      expected: this.expected,
      finished: this.finishedCount,
      completedBy,
      elapsedMs: this.clock.now() - this.startedAt,
    };
  }

  /** Every reply so far, values and errors, in arrival order. */
  allReplies(): ReadonlyArray<BufferReply<T>> {
    return (this.arrived ??= []);
  }

  private checkAll(): void {
    if (this.expected !== undefined && this.finishedCount >= this.expected) this.finish('all');
  }

  private armStall(): void {
    if (this.rules.stall === undefined) return;
    if (this.stallTimer !== undefined) this.clock.clearTimer(this.stallTimer);
    this.stallTimer = this.clock.setTimer(() => this.decide('stall'), this.rules.stall);
  }

  private decide(completedBy: CompletedBy): void {
    if (this.expected !== undefined) return this.finish(completedBy);
    this.decided = completedBy;
    if (this.stallTimer !== undefined) this.clock.clearTimer(this.stallTimer);
    this.stallTimer = undefined;
  }

  private finish(completedBy: CompletedBy): void {
    if (this.ended) return;
    this.end();
    const timedOut =
      completedBy === 'timeout' ? new BufferTimeoutError<T>(this.pattern, this.rules.timeout, this.allReplies(), this.expected, this.finishedCount) : undefined;
    this.sink.complete(this.result(completedBy), timedOut);
  }

  private end(): void {
    this.ended = true;
    if (this.timeoutTimer !== undefined) this.clock.clearTimer(this.timeoutTimer);
    if (this.stallTimer !== undefined) this.clock.clearTimer(this.stallTimer);
    this.timeoutTimer = undefined;
    this.stallTimer = undefined;
  }
}
