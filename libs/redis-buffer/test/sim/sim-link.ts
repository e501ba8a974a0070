import type { Scheduler, SimOwner } from './scheduler.js';

/**
 * One direction of one simulated TCP connection: what is sent arrives after a delay, never before
 * something sent earlier on the same link (TCP keeps order). A blocked link (a network partition
 * that resets nothing) holds what arrives and delivers it in one burst, in order, when it heals.
 */
export class SimLink {
  private lastArrival = 0;
  private blocked = false;
  private readonly held: Array<() => void> = [];
  private flushing = false;

  constructor(
    private readonly scheduler: Scheduler,
    /** Who runs what arrives: the server for commands, the process for replies and messages. */
    private readonly receiver: SimOwner,
    /** Milliseconds one message spends in flight; drawn per message. */
    public delay: () => number,
  ) {}

  send(deliver: () => void): void {
    const arrival = Math.max(this.scheduler.now + this.delay(), this.lastArrival);
    this.lastArrival = arrival;
    this.scheduler.at(arrival, () => this.arrive(deliver), this.receiver);
  }

  block(): void {
    this.blocked = true;
  }

  heal(): void {
    if (!this.blocked) return;
    this.blocked = false;
    this.scheduleFlush();
  }

  private arrive(deliver: () => void): void {
    // Behind held messages, even once healed: order on the link is kept.
    if (this.blocked || this.held.length > 0) {
      this.held.push(deliver);
      return;
    }
    deliver();
  }

  private scheduleFlush(): void {
    if (this.flushing || this.held.length === 0) return;
    this.flushing = true;
    this.scheduler.after(0, () => {
      this.flushing = false;
      while (this.held.length > 0 && !this.blocked) this.held.shift()!();
    }, this.receiver);
  }
}
