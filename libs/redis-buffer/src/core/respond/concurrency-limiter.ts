/**
 * Bounds how many handlers run at once on one instance (`maxConcurrentHandlers`).
 *
 * A request past the bound waits in a FIFO queue of at most `maxQueued` entries and starts when a
 * handler finishes; past that too, `submit` returns false and the caller answers at once with an
 * overload error reply, so the asker learns it now instead of at its timeout. A queued request
 * whose deadline passed while it waited is refused by the server (`BUFFER_EXPIRED`) when it starts.
 *
 * "Running" is whatever `running()` reports (the server's set of handlers in flight), so a request
 * that ends early without running a handler (expired, no handler) never holds a slot.
 */
export class ConcurrencyLimiter {
  private queue: Array<() => void> = [];
  private head = 0;

  constructor(
    private readonly maxRunning: number,
    private readonly maxQueued: number,
    private readonly running: () => number,
  ) {}

  /** How many requests wait for a slot. */
  get queued(): number {
    return this.queue.length - this.head;
  }

  /** Whether a task submitted now would run at once: a slot is free and nobody waits. */
  get hasRoom(): boolean {
    return this.queued === 0 && this.running() < this.maxRunning;
  }

  /** Runs `task` now if a slot is free (and nobody waits), else queues it; false if the queue is full. */
  submit(task: () => void): boolean {
    if (this.hasRoom) {
      task();
      return true;
    }
    if (this.queued >= this.maxQueued) return false;
    this.queue.push(task);
    return true;
  }

  /** Removes and returns every queued task, in order (for shutdown, which refuses them). */
  takeAll(): Array<() => void> {
    const tasks = this.queue.slice(this.head);
    this.queue = [];
    this.head = 0;
    return tasks;
  }

  /** Call when a handler finishes: starts queued tasks while slots are free. */
  pump(): void {
    while (this.head < this.queue.length && this.running() < this.maxRunning) {
      const task = this.queue[this.head]!;
      this.queue[this.head++] = undefined as never;
      task();
    }
    if (this.head === this.queue.length) {
      // Emptied: start over (without a new array when it was empty all along, the common case).
      if (this.head > 0) {
        this.queue = [];
        this.head = 0;
      }
    } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  }
}
