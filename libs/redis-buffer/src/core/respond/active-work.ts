import type { Subscription } from 'rxjs';
import type { Clock } from '../clock.js';
import { ConcurrencyLimiter } from './concurrency-limiter.js';

/**
 * One handler run (a request's `HandlerRun`, an event's token), as `ActiveWork` keeps it: when it
 * started, and its links in the list of runs. The run carries its own links, so starting and ending
 * one allocates nothing (a Map entry per run cost the responder a copy in every young-generation
 * GC, see bench/NOTES.md).
 */
export interface Work {
  startedAt: number;
  /** Set by `ActiveWork` only. */
  workPrev?: Work | undefined;
  workNext?: Work | undefined;
  workSubscription?: Subscription | undefined;
  workListed?: boolean;
}

/**
 * What an instance is handling now: each request (its `HandlerRun`) and event (a token) with the
 * handler's stream subscription once there is one, and the limiter that queues what has no slot.
 * What a shutdown waits for, and stops when it runs out of time.
 */
export class ActiveWork {
  readonly limiter: ConcurrencyLimiter;
  // In start order, linked through the runs themselves: the first is the one running longest.
  private first: Work | undefined;
  private last: Work | undefined;
  private count = 0;
  /** Told when work starts while nothing ran (the instance's beats wait for that). */
  becameBusy: (() => void) | undefined;

  constructor(maxConcurrent: number, maxQueued: number) {
    this.limiter = new ConcurrencyLimiter(maxConcurrent, maxQueued, () => this.count);
  }

  /** Handlers running (requests and events). */
  get size(): number {
    return this.count;
  }

  /** `work` has started, at `now`. */
  start(work: Work, now: number): void {
    if (work.workListed === true) return;
    work.startedAt = now;
    work.workListed = true;
    work.workPrev = this.last;
    work.workNext = undefined;
    if (this.last === undefined) this.first = work;
    else this.last.workNext = work;
    this.last = work;
    if (++this.count === 1) this.becameBusy?.();
  }

  /** `work`'s handler stream is still open once subscribed (a run already let go is not tracked again). */
  readonly track = (work: Work, subscription: Subscription): void => {
    if (work.workListed === true) work.workSubscription = subscription;
  };

  /** `work` is over: its slot goes to the next queued task. */
  readonly done = (work: Work): void => {
    if (this.unlist(work)) this.limiter.pump();
  };

  /** When the handler running longest started; `undefined` when none runs. */
  oldestStart(): number | undefined {
    return this.first?.startedAt;
  }

  /** Resolves once nothing runs or is queued, or at `deadline` (by `clock`). */
  async idle(deadline: number, clock: Clock): Promise<void> {
    while (this.count + this.limiter.queued > 0 && clock.now() < deadline) await new Promise((resolve) => clock.setTimer(() => resolve(undefined), 5));
  }

  /** Runs every task still queued now (at shutdown, where each refuses its request). */
  runQueued(): void {
    for (const task of this.limiter.takeAll()) task();
  }

  /** Hands every run still going to `stop`, ends its stream, and forgets it. */
  stopRunning(stop: (work: Work) => void): void {
    const runs: Work[] = [];
    for (let work = this.first; work !== undefined; work = work.workNext) runs.push(work);
    for (const work of runs) {
      const subscription = work.workSubscription;
      stop(work);
      subscription?.unsubscribe();
      this.unlist(work);
    }
  }

  private unlist(work: Work): boolean {
    if (work.workListed !== true) return false;
    work.workListed = false;
    const { workPrev: prev, workNext: next } = work;
    if (prev === undefined) this.first = next;
    else prev.workNext = next;
    if (next === undefined) this.last = prev;
    else next.workPrev = prev;
    work.workPrev = work.workNext = work.workSubscription = undefined;
    this.count--;
    return true;
  }
}
