import type { Clock } from '../clock.js';

/**
 * Tracks this side's PUBLISHes until Redis answers them, to tell a slow or hung Redis (SIGSTOP,
 * `CLIENT PAUSE`, a partition that resets nothing) from silent instances: while a PUBLISH has been
 * waiting long, what was not heard is Redis's fault, not the instances'.
 */
export class PublishWatch {
  // In-flight PUBLISHes by token, in the order they were sent: the first is the oldest.
  private readonly inFlight = new Map<number, number>();
  private nextToken = 0;

  constructor(private readonly clock: Clock) {}

  /** Wraps one PUBLISH (or any Redis command whose answer is awaited). */
  track<T>(command: Promise<T>): Promise<T> {
    const token = this.nextToken++;
    this.inFlight.set(token, this.clock.now());
    const settle = (): void => {
      this.inFlight.delete(token);
    };
    command.then(settle, settle);
    return command;
  }

  /** How long the oldest PUBLISH still unanswered has waited, in ms; 0 when none is waiting. */
  unansweredFor(): number {
    for (const sentAt of this.inFlight.values()) return Math.max(0, this.clock.now() - sentAt);
    return 0;
  }
}
