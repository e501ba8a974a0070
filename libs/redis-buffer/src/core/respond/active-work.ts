import type { Subscription } from 'rxjs';
import type { Clock } from '../clock.js';
import { ConcurrencyLimiter } from './concurrency-limiter.js';

/** One handler run (a request's `HandlerRun`, an event's token): when it started, set by `ActiveWork.start`. */
export interface Work {
  startedAt: number;
}

/**
 * What an instance is handling now: each request (its `HandlerRun`) and event (a token) with the
 * handler's stream subscription once there is one, and the limiter that queues what has no slot.
 * What a shutdown waits for, and stops when it runs out of time.
 */
export class ActiveWork {
  readonly limiter: ConcurrencyLimiter;
  // In start order (a Map keeps insertion order): the first is the one running longest.
  private readonly running = new Map<Work, Subscription | undefined>();
  /** Told when work starts while nothing ran (the instance's beats wait for that). */
  becameBusy: (() => void) | undefined;

  constructor(maxConcurrent: number, maxQueued: number) {
    this.limiter = new ConcurrencyLimiter(maxConcurrent, maxQueued, () => this.running.size);
  }

  /** Handlers running (requests and events). */
  get size(): number {
    return this.running.size;
  }

  /** `work` has started, at `now`. */
  start(work: Work, now: number): void {
    work.startedAt = now;
    const wasIdle = this.running.size === 0;
    this.running.set(work, undefined);
    if (wasIdle) this.becameBusy?.();
  }

  /** `work`'s handler stream is still open once subscribed (a run already let go is not tracked again). */
  readonly track = (work: Work, subscription: Subscription): void => {
    if (this.running.has(work)) this.running.set(work, subscription);
  };

  /** `work` is over: its slot goes to the next queued task. */
  readonly done = (work: Work): void => {
    if (this.running.delete(work)) this.limiter.pump();
  };

  /** When the handler running longest started; `undefined` when none runs. */
  oldestStart(): number | undefined {
    for (const work of this.running.keys()) return work.startedAt;
    return undefined;
  }

  /** Resolves once nothing runs or is queued, or at `deadline` (by `clock`). */
  async idle(deadline: number, clock: Clock): Promise<void> {
    while (this.running.size + this.limiter.queued > 0 && clock.now() < deadline) await new Promise((resolve) => clock.setTimer(() => resolve(undefined), 5));
  }

  /** Runs every task still queued now (at shutdown, where each refuses its request). */
  runQueued(): void {
    for (const task of this.limiter.takeAll()) task();
  }

  /** Hands every run still going to `stop`, ends its stream, and forgets it. */
  stopRunning(stop: (work: Work) => void): void {
    for (const [work, subscription] of [...this.running]) {
      stop(work);
      subscription?.unsubscribe();
      this.running.delete(work);
    }
  }
}
