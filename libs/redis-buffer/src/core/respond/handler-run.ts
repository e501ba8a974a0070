import { isObservable, type Subscription } from 'rxjs';
import type { Coalescer } from '../bus/coalescer.js';
import type { Clock, TimerHandle } from '../clock.js';
import type { RequestEnvelope } from '../wire/envelope.js';
import type { BufferTelemetry, ProcessTrace } from '../telemetry/telemetry.js';
import type { Work } from './active-work.js';
import type { ReplyDelivery } from './reply-resend.js';
import { ReplyWriter } from './reply-writer.js';

/** What every handler run of one responder shares. */
export interface HandlerRunHost {
  readonly coalescer: Coalescer;
  readonly clock: Clock;
  readonly fromJson: string;
  readonly maxPayloadBytes: number;
  readonly delivery: ReplyDelivery;
  readonly telemetry: BufferTelemetry;
  /** Told once when the run is over. */
  readonly done: (run: HandlerRun) => void;
  /** Told of a handler's stream still open once subscribed. */
  readonly track: (run: HandlerRun, subscription: Subscription) => void;
}

/**
 * One handler run for one request: takes what the handler produced (a value, a promise or a
 * stream) to the reply, stops a stream still open at the deadline, and tells the responder once
 * when the run is over.
 *
 * It is its request's `ReplyWriter` by inheritance, so a request costs one object rather than a
 * writer, a run and closures.
 */
export class HandlerRun extends ReplyWriter implements Work {
  /** When it started (see `ActiveWork.start`): the instance beats while one has run a while. */
  startedAt = 0;
  workPrev: Work | undefined = undefined;
  workNext: Work | undefined = undefined;
  workSubscription: Subscription | undefined = undefined;
  workListed = false;
  /** The end hook of whatever ran around the handler (Nest's processing hooks), when one did. */
  endHook: (() => void) | undefined;
  private expiry: TimerHandle | undefined;
  private settled = false;

  constructor(
    private readonly host: HandlerRunHost,
    envelope: RequestEnvelope,
    deadline: number,
    private readonly trace: ProcessTrace | undefined,
  ) {
    super(host.coalescer, envelope.replyTo, envelope.id, host.fromJson, host.maxPayloadBytes, host.delivery, deadline, envelope.cr === 1);
  }

  /**
   * The handler's result, already awaited: a plain value or an Observable. Whatever throws on the
   * way (a stream that throws on subscribe) ends this answer with that error, never the caller of
   * this method (a promise callback or the Redis listener).
   */
  produced(result: unknown): void {
    try {
      this.take(result);
    } catch (error) {
      this.failed(error);
    }
  }

  /** The handler's result as it returned it: a promise is followed, anything else taken at once. */
  returned(result: unknown): void {
    if (isPromiseLike(result)) this.follow(result);
    else this.produced(result);
  }

  failed(error: unknown): void {
    this.error(error);
    this.settle();
  }

  private take(result: unknown): void {
    if (!isObservable(result)) {
      // One reply, no stream to build.
      this.value(result);
      this.end();
      return this.settle();
    }
    const subscription = result.subscribe(this);
    // Runs on completion, error or unsubscribe; at once if the stream has already ended.
    subscription.add(() => this.settle());
    if (this.isEnded) {
      subscription.unsubscribe();
      return;
    }
    this.host.track(this, subscription);
    // Past the deadline nobody listens: stop the stream instead of doing dead work. Armed only for a
    // stream still open once subscribed (most handlers have answered by then).
    const remaining = this.deadline! - this.host.clock.now();
    if (remaining > 0 && !this.settled) this.expiry = this.host.clock.setTimer(() => subscription.unsubscribe(), remaining);
  }

  /** Takes a promised result (the closures live in this small frame only). */
  private follow(result: PromiseLike<unknown>): void {
    result.then(
      (value) => this.produced(value),
      (error: unknown) => this.failed(error),
    );
  }

  private settle(): void {
    if (this.settled) return;
    this.settled = true;
    if (this.expiry !== undefined) this.host.clock.clearTimer(this.expiry);
    this.endHook?.();
    this.host.telemetry.endProcess(this.trace, this.errorType);
    this.host.done(this);
  }
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === 'function';
}
