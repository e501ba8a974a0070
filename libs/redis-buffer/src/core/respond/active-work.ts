import type { Subscription } from 'rxjs';
import type { Clock } from '../clock.js';
import { ConcurrencyLimiter } from './concurrency-limiter.js';

/**
 * What an instance is handling now: each request (its `HandlerRun`) and event (a token) with the
 * handler's stream subscription once there is one, and the limiter that queues what has no slot.
 * What a shutdown waits for, and stops when it runs out of time.
 */
export class ActiveWork {
  readonly limiter: ConcurrencyLimiter;
  private readonly running = new Map<object, Subscription | undefined>();
  // What ran at the last `stillRunningSinceLast()`.
  private noted: object[] = [];

  constructor(maxConcurrent: number, maxQueued: number) {
    this.limiter = new ConcurrencyLimiter(maxConcurrent, maxQueued, () => this.running.size);
  }

  /** Handlers running (requests and events). */
  get size(): number {
    return this.running.size;
  }

  /** `work` has started. */
  start(work: object): void {
    this.running.set(work, undefined);
  }

  /** `work`'s handler stream is still open once subscribed (a run already let go is not tracked again). */
  readonly track = (work: object, subscription: Subscription): void => {
    if (this.running.has(work)) this.running.set(work, subscription);
  };

  /** `work` is over: its slot goes to the next queued task. */
  readonly done = (work: object): void => {
    if (this.running.delete(work)) this.limiter.pump();
  };

  /**
   * Whether something that was running at the previous call still runs (a handler running for at
   * least the interval between calls); notes what runs now for the next call.
   */
  stillRunningSinceLast(): boolean {
    const long = this.noted.some((work) => this.running.has(work));
    this.noted = [...this.running.keys()];
    return long;
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
  stopRunning(stop: (work: object) => void): void {
    for (const [work, subscription] of [...this.running]) {
      stop(work);
      subscription?.unsubscribe();
      this.running.delete(work);
    }
  }
}
