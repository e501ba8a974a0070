/**
 * Messages that reach an instance between its subscription and `listening` (while its second
 * unique-id check is on its way): Redis counted it as their receiver, so they are held, at most
 * `limit` of them, and handled once it listens, or refused if it turns out to be a duplicate.
 */
export class StartupHold {
  private held: Array<[string, string]> | undefined;

  constructor(private readonly limit: number) {}

  /** From the subscription on, messages are held. */
  open(): void {
    this.held = [];
  }

  /** Holds one message; false when not open or full (the caller drops it and says so). */
  hold(channel: string, message: string): boolean {
    if (this.held === undefined || this.held.length >= this.limit) return false;
    this.held.push([channel, message]);
    return true;
  }

  /** What was held, in arrival order; holds nothing more. */
  release(): Array<[string, string]> {
    const held = this.held ?? [];
    this.held = undefined;
    return held;
  }
}
