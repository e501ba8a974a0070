/** Time and timers, injectable so that completion rules can be tested with a fake clock. */
export interface Clock {
  now(): number;
  setTimer(callback: () => void, ms: number): TimerHandle;
  clearTimer(handle: TimerHandle): void;
}

export type TimerHandle = unknown;

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer: (callback, ms) => {
    const timer = setTimeout(callback, ms);
    // A pending request must not keep the process alive on its own.
    timer.unref();
    return timer;
  },
  clearTimer: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/**
 * Runs a callback in a later turn of the event loop, after pending I/O: `setImmediate` on the
 * system clock, a zero-delay timer on any other, so that a simulated clock orders it too.
 */
export function laterTurn(clock: Clock): (callback: () => void) => void {
  return clock === systemClock ? (callback) => void setImmediate(callback) : (callback) => void clock.setTimer(callback, 0);
}

/** What a pooled timer can call instead of a closure: an object that lives as long as its timer anyway. */
export interface TimerTarget {
  onTimer(): void;
}

interface PooledTimer {
  callback: (() => void) | TimerTarget | undefined;
  readonly due: number;
  readonly queue: TimerQueue;
}

/** The timers of one duration, in the order they were set (which is also the order they are due). */
class TimerQueue {
  entries: Array<PooledTimer | undefined> = [];
  head = 0;
  /** Cleared timers still in `entries` (holes). */
  cleared = 0;
  armed: TimerHandle | undefined;

  constructor(readonly ms: number) {}

  get length(): number {
    return this.entries.length - this.head;
  }
}

/**
 * A `Clock` whose timers share one underlying timer per duration: what a client sets for every
 * request (its timeout) costs a small object and an array slot instead of a `Timeout` each
 * (memory per request in flight, and a timer-list insert and removal per request).
 *
 * Timers of one duration are due in the order they were set, so each duration keeps a FIFO and
 * one timer armed for its oldest live entry. A cleared timer leaves a hole that is skipped; holes
 * are compacted away once they outnumber the live entries, so memory follows the live timers.
 * Due times are read from a monotonic clock when the underlying clock is the system's, so a
 * wall-clock step changes nothing.
 */
export class TimerPool implements Clock {
  private readonly queues = new Map<number, TimerQueue>();
  private readonly time: () => number;

  constructor(private readonly clock: Clock = systemClock) {
    this.time = clock === systemClock ? () => performance.now() : () => clock.now();
  }

  now(): number {
    return this.clock.now();
  }

  setTimer(callback: () => void, ms: number): TimerHandle {
    return this.add(callback, ms);
  }

  /** `setTimer` calling `target.onTimer()`: no closure per timer. */
  setTimerFor(target: TimerTarget, ms: number): TimerHandle {
    return this.add(target, ms);
  }

  private add(callback: (() => void) | TimerTarget, ms: number): TimerHandle {
    let queue = this.queues.get(ms);
    if (queue === undefined) {
      queue = new TimerQueue(ms);
      this.queues.set(ms, queue);
    }
    // Whole milliseconds (a small integer, not a heap number): the underlying timers have no finer grain.
    const timer: PooledTimer = { callback, due: Math.ceil(this.time()) + ms, queue };
    queue.entries.push(timer);
    if (queue.armed === undefined) this.arm(queue);
    return timer;
  }

  clearTimer(handle: TimerHandle): void {
    const timer = handle as PooledTimer;
    if (timer.callback === undefined) return;
    timer.callback = undefined;
    const queue = timer.queue;
    queue.cleared++;
    if (queue.cleared > 64 && queue.cleared * 2 > queue.length) this.compact(queue);
  }

  /** Timers set and not yet fired or cleared (for tests and diagnostics). */
  get pending(): number {
    let count = 0;
    for (const queue of this.queues.values()) count += queue.length - queue.cleared;
    return count;
  }

  private arm(queue: TimerQueue): void {
    // Drop holes at the head: the oldest live timer decides when to wake up.
    while (queue.head < queue.entries.length && queue.entries[queue.head]!.callback === undefined) {
      queue.entries[queue.head++] = undefined;
      queue.cleared--;
    }
    if (queue.length === 0) {
      if (this.queues.get(queue.ms) === queue) this.queues.delete(queue.ms);
      return;
    }
    const oldest = queue.entries[queue.head]!;
    const delay = Math.max(0, Math.min(queue.ms, oldest.due - this.time()));
    queue.armed = this.clock.setTimer(() => this.fire(queue), delay);
  }

  private fire(queue: TimerQueue): void {
    queue.armed = undefined;
    const now = this.time();
    while (queue.head < queue.entries.length) {
      const timer = queue.entries[queue.head]!;
      if (timer.callback !== undefined && timer.due > now) break;
      queue.entries[queue.head++] = undefined;
      const callback = timer.callback;
      if (callback === undefined) {
        queue.cleared--;
        continue;
      }
      timer.callback = undefined;
      try {
        if (typeof callback === 'function') callback();
        else callback.onTimer();
      } catch (error) {
        // As from a timer of its own: thrown, but without stopping the timers after it.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
    if (queue.head > 1024 && queue.head * 2 > queue.entries.length) this.compact(queue);
    if (queue.armed === undefined) this.arm(queue);
  }

  private compact(queue: TimerQueue): void {
    const live: PooledTimer[] = [];
    for (let index = queue.head; index < queue.entries.length; index++) {
      const timer = queue.entries[index]!;
      if (timer.callback !== undefined) live.push(timer);
    }
    queue.entries = live;
    queue.head = 0;
    queue.cleared = 0;
  }
}
