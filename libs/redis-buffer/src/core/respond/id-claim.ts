import type { RedisBus } from '../bus/redis-bus.js';
import type { Clock } from '../clock.js';
import type { BufferChannels } from '../wire/channels.js';
import { type HelloEnvelope, type PingEnvelope } from '../wire/envelope.js';
import { decodeMessage } from '../wire/decode.js';
import { encodeEnvelope } from '../wire/encode.js';

/** A holder of the direct channel that does not answer for this many `livenessTimeout`s is taken over. */
export const TAKEOVER_AFTER = 2;

/**
 * Whether the processes already subscribed to an instance's direct channel are alive: pings it
 * from a probe inbox of its own and collects the incarnations that answer. A process with this
 * `instanceId` that answers is a live duplicate; one that stays subscribed without answering for
 * `TAKEOVER_AFTER` liveness bounds is half-open (frozen, or its host gone with the socket still
 * open) and may be replaced.
 */
export class IdClaim {
  /** The inbox the probe's pongs come to; messages there go to `deliver`. */
  readonly inbox: string;
  private readonly answered = new Set<string>();

  constructor(
    private readonly instanceId: string,
    private readonly incarnation: string,
    private readonly channels: BufferChannels,
    private readonly clock: Clock,
    private readonly livenessTimeout: number,
  ) {
    this.inbox = channels.inbox(`${instanceId}.claim.${incarnation}`);
  }

  /** A message on the probe inbox: a pong from another incarnation of this id means it is alive. */
  deliver(message: string): void {
    for (const envelope of decodeMessage(message, this.inbox).envelopes) {
      if (envelope.kind === 'pong' && envelope.from === this.instanceId && envelope.inc !== this.incarnation) this.answered.add(envelope.inc);
    }
  }

  /**
   * Pings the direct channel every quarter of `livenessTimeout` for up to `rounds` liveness bounds;
   * resolves with the other incarnations that answered (as soon as one does).
   */
  async probe(bus: RedisBus, rounds: number): Promise<ReadonlySet<string>> {
    this.answered.clear();
    await bus.subscribe([this.inbox]);
    try {
      const direct = this.channels.direct(this.instanceId);
      const quarter = this.livenessTimeout / 4;
      const end = this.clock.now() + rounds * this.livenessTimeout;
      for (let n = 0; this.answered.size === 0 && this.clock.now() < end; n++) {
        const ping: PingEnvelope = { v: 1, kind: 'ping', id: `claim${n}`, from: this.instanceId, replyTo: this.inbox };
        await bus.publish(direct, encodeEnvelope(ping));
        await new Promise((resolve) => this.clock.setTimer(() => resolve(undefined), quarter));
      }
      return new Set(this.answered);
    } finally {
      await bus.unsubscribe([this.inbox]).catch(() => undefined);
    }
  }

  /**
   * What a process that took over tells its half-open predecessor, on the direct channel both are
   * subscribed to: a `hello` from this id with the new `inc`, and `at` so that a captured one replayed
   * later never stops a process started after it.
   */
  takeoverNotice(patterns: string[], events: string[]): string {
    const hello: HelloEnvelope = { v: 1, kind: 'hello', id: `takeover.${this.incarnation}`, from: this.instanceId, inc: this.incarnation, at: Date.now(), patterns, events };
    return encodeEnvelope(hello);
  }
}
