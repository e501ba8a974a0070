import type { ConsumerContext, Held } from './held-entries.js';

/** A claimed entry that started this many times without finishing runs isolated. */
export const ISOLATE_FROM = 2;

/**
 * Claimed entries are suspects: the instance that held them stopped, and one of them may be what
 * killed it. A suspect that already started `ISOLATE_FROM` times without finishing runs alone among
 * such entries here, so a poison entry can then take down only itself and the fresh entries beside
 * it, and every other suspect reaches its own verdict (attempts count only runs that really
 * started). After a single crash, claimed entries still run in parallel: recovery from an ordinary
 * crash is not slowed down by one-at-a-time runs.
 */
export class SuspectQueue {
  private readonly queue: Held[] = [];
  private running: Held | undefined;

  constructor(
    private readonly context: ConsumerContext,
    private readonly process: (held: Held) => Promise<void>,
  ) {
    context.held.onFinish((held) => {
      const queued = this.queue.indexOf(held);
      if (queued >= 0) this.queue.splice(queued, 1);
      this.leave(held);
    });
  }

  /** Whether this entry is the one running isolated now. */
  isRunning(held: Held): boolean {
    return this.running === held;
  }

  enqueue(held: Held): void {
    this.queue.push(held);
    this.pump();
  }

  /** The isolated entry ran to an end, or went back to waiting: the next one may go. */
  leave(held: Held): void {
    if (this.running !== held) return;
    this.running = undefined;
    this.pump();
  }

  private pump(): void {
    if (this.running !== undefined || this.context.stopping()) return;
    const next = this.queue.shift();
    if (next === undefined) return;
    this.running = next;
    void this.process(next);
  }
}
