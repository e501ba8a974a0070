import type { Clock, TimerHandle } from '../clock.js';
import { type HelloEnvelope, type WhoEnvelope } from '../wire/envelope.js';
import { encodeEnvelope } from '../wire/encode.js';
import { infoOf, type InstanceInfo, type MembershipView } from './membership.js';

/** What a caller's `who` rounds need from it. */
export interface WhoRoundsHost {
  readonly view: MembershipView;
  readonly clock: Clock;
  readonly livenessTimeout: number;
  /** The caller's instance id and inbox, for the `who` envelope. */
  readonly from: string;
  readonly inbox: string;
  readonly whoChannel: string;
  nextId(): string;
  /** Publishes through the caller's coalescer; resolves with Redis's receiver count. */
  publish(channel: string, encoded: string): Promise<number>;
  /** Whether a round can be sent now (connected, inbox subscribed, not closed). */
  canAsk(): boolean;
  /** Told when a round has ended and the view holds its outcome. */
  roundEnded(): void;
}

/**
 * A caller's `who` rounds: every instance answers a `who` with a `hello`; a round ends when as many
 * have answered as Redis counted on the `who` channel, or after half the liveness bound (a receiver
 * of the `who` channel that is not an instance never answers, nor does a frozen instance).
 * Concurrent askers share the round under way.
 */
export class WhoRounds {
  private current: Promise<InstanceInfo[]> | undefined;
  // Each open round's hello handler, by round id (a hello answering a `who` carries its id).
  private readonly open = new Map<string, (hello: HelloEnvelope) => void>();
  // A round asked for by unsolicited hellos (to vouch for newcomers), at most one per window.
  private vouchTimer: TimerHandle | undefined;
  private lastRoundAt = Number.NEGATIVE_INFINITY;
  private closed = false;

  constructor(private readonly host: WhoRoundsHost) {}

  /** The handler of the open round `id` answers, if any. */
  round(id: string): ((hello: HelloEnvelope) => void) | undefined {
    return this.open.get(id);
  }

  /** One round (or the one under way); resolves with the instances that answered, by id. */
  ask(): Promise<InstanceInfo[]> {
    this.current ??= new Promise<InstanceInfo[]>((resolve, reject) => {
      const { view, clock } = this.host;
      this.lastRoundAt = clock.now();
      const id = this.host.nextId();
      const answered = new Map<string, InstanceInfo>();
      const since = view.roundStart();
      let expected: number | undefined;
      let timer: TimerHandle | undefined;
      const done = (): void => {
        if (timer !== undefined) clock.clearTimer(timer);
        this.open.delete(id);
        this.current = undefined;
        // Every receiver answered: whoever the view knew and did not answer is not subscribed any more.
        const unvouched = view.markSynced(since, expected !== undefined && answered.size >= expected ? new Set(answered.keys()) : undefined);
        // Members only heard of (an unsolicited hello) are vouched for or cleared by a later round.
        if (unvouched > 0) this.vouchSoon(this.host.livenessTimeout);
        this.host.roundEnded();
        resolve([...answered.values()].sort((a, b) => (a.instanceId < b.instanceId ? -1 : a.instanceId > b.instanceId ? 1 : 0)));
      };
      this.open.set(id, (hello) => {
        answered.set(hello.from, infoOf(hello));
        if (expected !== undefined && answered.size >= expected) done();
      });
      const who: WhoEnvelope = { v: 1, kind: 'who', id, from: this.host.from, replyTo: this.host.inbox };
      this.host.publish(this.host.whoChannel, encodeEnvelope(who)).then(
        (receivers) => {
          expected = receivers;
          if (answered.size >= receivers) done();
          else timer = clock.setTimer(done, this.host.livenessTimeout / 2);
        },
        (error: unknown) => {
          this.open.delete(id);
          this.current = undefined;
          reject(error);
        },
      );
    });
    return this.current;
  }

  /**
   * A hello from an instance no exchange vouches for: a round will vouch for it (it answers) or
   * clear it (it does not), at most one round per half `livenessTimeout` however many hellos come.
   */
  vouchSoon(after = 0): void {
    if (this.vouchTimer !== undefined || this.closed) return;
    const window = this.host.livenessTimeout / 2;
    const wait = Math.max(after, this.lastRoundAt + window - this.host.clock.now());
    this.vouchTimer = this.host.clock.setTimer(() => {
      this.vouchTimer = undefined;
      if (this.closed || !this.host.canAsk()) return;
      void this.ask().catch(() => undefined);
    }, wait);
  }

  close(): void {
    this.closed = true;
    if (this.vouchTimer !== undefined) this.host.clock.clearTimer(this.vouchTimer);
    this.vouchTimer = undefined;
  }
}
