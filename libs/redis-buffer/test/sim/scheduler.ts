import type { Clock, TimerHandle } from '../../src/core/clock.js';

/**
 * Whatever runs events in the simulation: a process, or the Redis server. A paused owner's events
 * wait (in order) until it resumes; a dead owner's events are dropped.
 */
export class SimOwner {
  paused = false;
  dead = false;
  /** Events that came due while paused, in the order they came due. */
  readonly parked: SimEvent[] = [];
  /** Virtual time spent paused, summed over every pause (for the deadline check). */
  pausedFor = 0;
  pausedAt = 0;

  constructor(readonly name: string) {}
}

export interface SimEvent {
  readonly at: number;
  readonly seq: number;
  readonly run: () => void;
  readonly owner: SimOwner | undefined;
  cancelled: boolean;
}

/** Where the virtual clock starts: any fixed value; far from 0 so that a stray `0` stands out. */
export const SIM_EPOCH = 1_000_000;

/**
 * A virtual clock and an event queue ordered by (time, sequence): ties run in the order they were
 * scheduled, so a seed decides everything. Between two events every pending microtask (promise
 * continuations) runs to completion, as Node does between two callbacks of its event loop, so
 * `await` in the code under test interleaves the same way on every run.
 */
export class Scheduler {
  private time = SIM_EPOCH;
  private readonly heap: SimEvent[] = [];
  private sequence = 0;
  // Parked events released on resume go before everything else due at that time: numbers below every `sequence`.
  private frontSequence = 0;
  /** Errors thrown by event callbacks: the code under test threw into its event loop. */
  readonly thrown: Array<{ at: number; owner: string; error: unknown }> = [];
  events = 0;

  get now(): number {
    return this.time;
  }

  at(time: number, run: () => void, owner?: SimOwner): SimEvent {
    const event: SimEvent = { at: Math.max(time, this.time), seq: this.sequence++, run, owner, cancelled: false };
    this.push(event);
    return event;
  }

  after(ms: number, run: () => void, owner?: SimOwner): SimEvent {
    return this.at(this.time + Math.max(0, ms), run, owner);
  }

  cancel(event: SimEvent): void {
    event.cancelled = true;
  }

  pause(owner: SimOwner): void {
    if (owner.paused || owner.dead) return;
    owner.paused = true;
    owner.pausedAt = this.time;
  }

  /** Resumes `owner`: what came due meanwhile runs now, in order, before anything else due now. */
  resume(owner: SimOwner): void {
    if (!owner.paused) return;
    owner.paused = false;
    owner.pausedFor += this.time - owner.pausedAt;
    const parked = owner.parked.splice(0);
    this.frontSequence -= parked.length + 1;
    parked.forEach((event, index) => this.push({ at: this.time, seq: this.frontSequence + index - 1e15, run: event.run, owner, cancelled: event.cancelled }));
  }

  /** A `Clock` for code running as `owner`: its timers are events of that owner. */
  clockFor(owner: SimOwner): Clock {
    return {
      now: () => this.time,
      setTimer: (callback: () => void, ms: number): TimerHandle => this.after(ms, callback, owner),
      clearTimer: (handle: TimerHandle) => this.cancel(handle as SimEvent),
    };
  }

  /** Runs events until none is left before `until` (or `stop()` says so); returns whether any is left. */
  async run(until: number, stop: () => boolean = () => false): Promise<boolean> {
    await drainMicrotasks();
    while (this.heap.length > 0 && !stop()) {
      const next = this.heap[0]!;
      if (next.at > until) break;
      this.pop();
      if (next.cancelled) continue;
      const owner = next.owner;
      if (owner !== undefined) {
        if (owner.dead) continue;
        if (owner.paused) {
          this.time = next.at;
          owner.parked.push(next);
          continue;
        }
      }
      this.time = next.at;
      this.events++;
      try {
        next.run();
      } catch (error) {
        this.thrown.push({ at: this.time, owner: owner?.name ?? '-', error });
      }
      await drainMicrotasks();
    }
    if (this.heap.length === 0 || this.heap[0]!.at > until) this.time = Math.max(this.time, until);
    return this.heap.some((event) => !event.cancelled);
  }

  private push(event: SimEvent): void {
    const heap = this.heap;
    heap.push(event);
    let index = heap.length - 1;
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (!before(heap[index]!, heap[parent]!)) break;
      [heap[index], heap[parent]] = [heap[parent]!, heap[index]!];
      index = parent;
    }
  }

  private pop(): void {
    const heap = this.heap;
    const last = heap.pop()!;
    if (heap.length === 0) return;
    heap[0] = last;
    let index = 0;
    for (;;) {
      const left = index * 2 + 1;
      const right = left + 1;
      let smallest = index;
      if (left < heap.length && before(heap[left]!, heap[smallest]!)) smallest = left;
      if (right < heap.length && before(heap[right]!, heap[smallest]!)) smallest = right;
      if (smallest === index) break;
      [heap[index], heap[smallest]] = [heap[smallest]!, heap[index]!];
      index = smallest;
    }
  }
}

function before(a: SimEvent, b: SimEvent): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/**
 * Resolves once every microtask queued so far, and every one they queue, has run: Node runs the
 * whole microtask queue before the next macrotask. No real timer is involved, only the loop's order.
 */
export function drainMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
