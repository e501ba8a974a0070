import type { SignatureStamp } from './signing.js';

/** What `ReplayGuard.admit` found: new, or why it is dropped. */
export type Freshness = 'fresh' | 'replayed' | 'stale';

interface Sender {
  /** The highest `seq` accepted from this sender, per channel. */
  readonly channels: Map<string, number>;
  /** When anything was last accepted from it, by this receiver's clock. */
  lastHeard: number;
}

/**
 * Replay protection for signed messages (see `signing.ts` for the stamp). A signer's messages on
 * one channel reach every subscriber in the order it sealed them (one connection, one Redis
 * server or shard per channel), so per sender and channel:
 * - a `seq` at or below the highest accepted is a replay, whatever its time: dropped (`replayed`);
 * - the first message from a sender on a channel has no `seq` to compare with: it is accepted only
 *   if its `at` is within `maxClockSkew` of this receiver's clock (`stale` otherwise). This bounds
 *   what a receiver that never heard the sender (started, or subscribed, after the capture) takes.
 *
 * A sender not heard from for `2 × maxClockSkew` + 1 s is forgotten: by then anything it sealed
 * before is outside `maxClockSkew` of this clock, for any sender clock within `maxClockSkew` of
 * it, so forgetting lets no replay through. Clock skew matters only on first contact: after it,
 * ordering is by `seq` alone.
 */
export class ReplayGuard {
  private readonly senders = new Map<string, Sender>();
  private readonly forgetAfter: number;
  private nextSweep: number;

  constructor(
    private readonly maxClockSkew: number,
    private readonly now: () => number = Date.now,
  ) {
    this.forgetAfter = 2 * maxClockSkew + 1000;
    this.nextSweep = now() + this.forgetAfter;
  }

  /** Senders remembered now (for tests and stats). */
  get size(): number {
    return this.senders.size;
  }

  /** Checks a correctly signed message's stamp and, when it is fresh, records it. */
  admit(channel: string, stamp: SignatureStamp): Freshness {
    const now = this.now();
    if (now >= this.nextSweep) this.sweep(now);
    const sender = this.senders.get(stamp.src);
    const highest = sender?.channels.get(channel);
    if (highest !== undefined) {
      if (stamp.seq <= highest) return 'replayed';
    } else if (Math.abs(now - stamp.at) > this.maxClockSkew) {
      return 'stale';
    }
    if (sender === undefined) this.senders.set(stamp.src, { channels: new Map([[channel, stamp.seq]]), lastHeard: now });
    else {
      sender.channels.set(channel, stamp.seq);
      sender.lastHeard = now;
    }
    return 'fresh';
  }

  private sweep(now: number): void {
    for (const [src, sender] of this.senders) if (now - sender.lastHeard > this.forgetAfter) this.senders.delete(src);
    this.nextSweep = now + this.forgetAfter / 2;
  }
}
