/** How many deliveries are remembered at most: past it the oldest are forgotten first. */
const MAX_REMEMBERED = 100_000;

/**
 * The topic requests and events this instance has taken, by key, for as long as another delivery
 * of them may still come: a topic message is published on its exact channel and on each matching
 * wildcard binding's channel, and an instance bound to several of them receives it once per
 * channel. Those deliveries come within moments of each other (one caller's PUBLISHes in a row), so
 * a short memory, bounded in size, is enough.
 */
export class SeenDeliveries {
  // Key -> when it may be forgotten, in insertion order (roughly that of expiry).
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly now: () => number,
    private readonly maxRemembered = MAX_REMEMBERED,
  ) {}

  /** True the first time `key` is seen (it is then remembered for `forMs`); false for a repeat. */
  firstTime(key: string, forMs: number): boolean {
    const now = this.now();
    this.forgetExpired(now);
    if (this.seen.has(key)) return false;
    this.seen.set(key, now + forMs);
    if (this.seen.size > this.maxRemembered) this.seen.delete(this.seen.keys().next().value!);
    return true;
  }

  get size(): number {
    return this.seen.size;
  }

  private forgetExpired(now: number): void {
    for (const [key, until] of this.seen) {
      if (until > now) return;
      this.seen.delete(key);
    }
  }
}
