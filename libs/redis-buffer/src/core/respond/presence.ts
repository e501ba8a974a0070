import { randomBytes } from 'node:crypto';
import type { Coalescer } from '../bus/coalescer.js';
import type { RedisBus } from '../bus/redis-bus.js';
import { laterTurn, type Clock, type TimerHandle } from '../clock.js';
import { DuplicateInstanceError } from '../errors/duplicate-instance.error.js';
import type { BufferLogger } from '../logger.js';
import type { BufferChannels } from '../wire/channels.js';
import { type ByeEnvelope, type HelloEnvelope, type PongEnvelope } from '../wire/envelope.js';
import { encodeEnvelope } from '../wire/encode.js';
import { CutOffWatch } from './cut-off-watch.js';
import { IdClaim, TAKEOVER_AFTER } from './id-claim.js';

/** A shared ping arriving this soon after the last shared pong is answered by that pong (docs/protocol.md, "Shared pongs"). */
export const SHARED_PONG_WINDOW_MS = 100;

/** What an instance's presence needs from its responder. */
export interface PresenceHost {
  readonly instanceId: string;
  readonly namespace: string;
  readonly livenessTimeout: number;
  readonly channels: BufferChannels;
  readonly clock: Clock;
  readonly logger: BufferLogger;
  /** Bounded: for failures that a flood of input could repeat. */
  readonly badInput: Pick<BufferLogger, 'warn'>;
  /** Redis stopped answering this instance without closing its connection (see `CutOffWatch`). */
  readonly noticedCutOff: () => void;
  /** The patterns it answers, and the events it handles (channel forms), for its hellos. */
  readonly patterns: () => string[];
  readonly events: () => string[];
  /**
   * With `signingKey`: `hello` and `bye` carry `seq` and `at`, so that a caller never takes a
   * replayed one of an earlier incarnation (see `isReplay`). Without, they are left out (anyone can
   * forge membership then anyway, and unsigned traffic stays as it was).
   */
  readonly stampMembership: boolean;
}

/**
 * What an instance tells callers about itself, so that they know whom a request waits for: a
 * `hello` on joining, on each `who`, after a reconnect and after a freeze; a `pong` to each ping; a
 * `bye` on leaving. And the check that no other live process has its `instanceId`.
 */
export class Presence {
  /** Random per instance object: tells this process from an earlier one with the same `instanceId`. */
  readonly incarnation = randomBytes(8).toString('base64url');
  /** Pings its own direct channel from a probe inbox, to tell a live duplicate from a half-open one. */
  readonly claim: IdClaim;
  /** Notices a cut from Redis that closes no socket, and tells which requests waited through it. */
  readonly cutOff: CutOffWatch;
  private thawTimer: TimerHandle | undefined;
  private coalescer: Coalescer | undefined;
  /** This incarnation's membership counter: one more for every `hello` and `bye` (so the `bye` has the highest). */
  private membershipSeq = 0;
  // How many half-open holders of its direct channel it took over (subscribed until they notice).
  private tookOver = 0;
  private lastSharedPong = Number.NEGATIVE_INFINITY;
  private beatTimer: TimerHandle | undefined;
  private beats = 0;
  // When the handler running longest started (`undefined`: none runs), once beats are on.
  private oldestStart: (() => number | undefined) | undefined;
  // Whether the bus says it is connected, once watched (see `watch`).
  private connected: () => boolean = () => false;

  constructor(private readonly host: PresenceHost) {
    this.claim = new IdClaim(host.instanceId, this.incarnation, host.channels, host.clock, host.livenessTimeout);
    // Back from a cut, callers took it for silent: it says hello again.
    this.cutOff = new CutOffWatch({ ...host, cut: host.noticedCutOff, back: () => void this.announce().catch(() => undefined) });
  }

  /** The coalescer its envelopes leave through, once connected. */
  attach(coalescer: Coalescer): void {
    this.coalescer = coalescer;
  }

  /**
   * Refuses to run beside another live process with the same id (more than `allowed` subscribers on
   * its direct channel). Before subscribing (`allowed` 0), holders of the direct channel are pinged:
   * if none answers for `TAKEOVER_AFTER` liveness bounds they are half-open (frozen, cut off with the
   * socket still open), and this process takes over; they stop when they read its notice.
   */
  async ensureUniqueId(bus: RedisBus, allowed: number, subscribed: readonly string[]): Promise<void> {
    const { instanceId, namespace, channels } = this.host;
    // Start-up checked that PUBSUB NUMSUB is allowed: a refusal here is an error, not a skipped check.
    const subscribers = await bus.numsub(channels.direct(instanceId));
    if (subscribers <= allowed + this.tookOver) return;
    if (allowed === 0 && (await this.claim.probe(bus, TAKEOVER_AFTER)).size === 0) {
      this.tookOver = subscribers;
      this.host.logger.warn(
        `Instance id "${instanceId}" is held in namespace "${namespace}" by ${subscribers} connection(s) that did not answer a ping for ${TAKEOVER_AFTER * this.host.livenessTimeout} ms (a frozen or half-open process): taking over; it stops answering when it reads this process's notice.`,
      );
      return;
    }
    if (allowed > 0) await bus.unsubscribe(subscribed).catch(() => undefined);
    throw new DuplicateInstanceError(instanceId, namespace);
  }

  /** After a takeover, once listening: tells the predecessor, on the direct channel, that it was replaced. */
  noticeTakeover(): Promise<void> {
    if (this.tookOver === 0) return Promise.resolve();
    const notice = this.claim.takeoverNotice(this.host.patterns(), this.host.events());
    return this.publish(this.host.channels.direct(this.host.instanceId), notice).then(
      () => undefined,
      (error: Error) => this.host.badInput.warn(`Could not notify the predecessor of instance "${this.host.instanceId}" that it was replaced: ${error.message}`),
    );
  }

  /**
   * Tells every caller this instance is here (after joining, a reconnect, or a freeze), or, with
   * `draining`, that it takes no new requests while it answers what it received.
   */
  announce(draining = false): Promise<void> {
    return this.publish(this.host.channels.members(), encodeEnvelope(this.hello(this.incarnation, draining))).then(
      () => undefined,
      (error: Error) => this.host.badInput.warn(`Could not announce instance "${this.host.instanceId}": ${error.message}`),
    );
  }

  /** Answers a `who` round with a hello carrying the round's id (`draining` while it drains). */
  answerWho(replyTo: string, id: string, draining: boolean): void {
    void this.publish(replyTo, encodeEnvelope(this.hello(id, draining))).catch(() => undefined);
  }

  /**
   * Answers a ping. A `share`d one is answered on the members channel, where every caller hears it
   * (one caller's ping refreshes every caller's view); one arriving within `SHARED_PONG_WINDOW_MS`
   * of the last shared pong is answered by it already. Returns whether a pong was sent.
   */
  answerPing(replyTo: string, id: string, share: boolean): boolean {
    const pong: PongEnvelope = { v: 1, kind: 'pong', id, from: this.host.instanceId, inc: this.incarnation };
    if (share) {
      const now = this.host.clock.now();
      if (now - this.lastSharedPong < SHARED_PONG_WINDOW_MS) return false;
      this.lastSharedPong = now;
      replyTo = this.host.channels.members();
    }
    void this.publish(replyTo, encodeEnvelope(pong)).catch(() => undefined);
    return true;
  }

  /** Tells every caller this instance left; resolves with the PUBLISH. */
  bye(): Promise<number> {
    const bye: ByeEnvelope = { v: 1, kind: 'bye', id: this.incarnation, from: this.host.instanceId, inc: this.incarnation, ...this.order() };
    return this.publish(this.host.channels.members(), encodeEnvelope(bye));
  }

  /**
   * A process that was frozen (SIGSTOP, a debugger, a very long pause) may have been taken for
   * silent by callers meanwhile: when a tick comes much later than scheduled, it says hello again.
   * With `ping` (a round trip on the connection that delivers requests), cuts from Redis that close
   * no socket are watched for too (see `CutOffWatch`).
   */
  watch(connected: () => boolean, ping: (() => Promise<void>) | undefined): void {
    this.connected = connected;
    if (ping !== undefined) this.cutOff.start(ping, connected);
    const { clock, livenessTimeout } = this.host;
    const every = livenessTimeout / 4;
    let last = clock.now();
    const tick = (): void => {
      const now = clock.now();
      // After the I/O that waited meanwhile has been read: a takeover notice among it stops this
      // process before it announces itself again.
      if (now - last > livenessTimeout) laterTurn(clock)(() => connected() && void this.announce());
      last = now;
      this.thawTimer = clock.setTimer(tick, every);
    };
    this.thawTimer = clock.setTimer(tick, every);
  }

  stopWatching(): void {
    if (this.thawTimer !== undefined) this.host.clock.clearTimer(this.thawTimer);
    this.thawTimer = undefined;
    this.cutOff.stop();
  }

  /** Stops the signs of life `beatWhileBusy` sends (a draining instance beats until it leaves). */
  stopBeating(): void {
    if (this.beatTimer !== undefined) this.host.clock.clearTimer(this.beatTimer);
    this.beatTimer = undefined;
    this.oldestStart = undefined;
  }

  /**
   * Beats while a handler has run for a fifth of `livenessTimeout`: a pong on the members channel
   * when the longest-running handler reaches that age, then every two fifths while one that old
   * runs (a shared pong counts as one). Every caller hears it, so none of them pings this instance:
   * callers ping one not heard from for half of `livenessTimeout`, and their first liveness round
   * for a request comes a quarter after they sent it, after the first beat.
   */
  beatWhileBusy(oldestStart: () => number | undefined): void {
    this.oldestStart = oldestStart;
    if (oldestStart() !== undefined) this.wakeBeats();
  }

  /** Work started while nothing ran: the first beat is due a fifth of `livenessTimeout` from now. */
  wakeBeats(): void {
    if (this.oldestStart === undefined || this.beatTimer !== undefined) return;
    this.beatTimer = this.host.clock.setTimer(this.beatTick, this.host.livenessTimeout / 5);
  }

  private readonly beatTick = (): void => {
    this.beatTimer = undefined;
    const since = this.oldestStart?.();
    // Idle: the next work to start wakes the beats again.
    if (since === undefined) return;
    const { clock, livenessTimeout } = this.host;
    const now = clock.now();
    const every = (2 * livenessTimeout) / 5;
    // A caller's first round for the longest-running handler's request needs a sign from after
    // that handler started; every later one, a sign less than half a liveness bound old.
    const due = this.lastSharedPong >= since ? this.lastSharedPong + every : since + livenessTimeout / 5;
    let next = due - now;
    if (next <= 0) {
      if (this.connected()) {
        const pong: PongEnvelope = { v: 1, kind: 'pong', id: `beat${this.beats++}`, from: this.host.instanceId, inc: this.incarnation };
        this.lastSharedPong = now;
        void this.publish(this.host.channels.members(), encodeEnvelope(pong)).catch(() => undefined);
      }
      next = every;
    }
    this.beatTimer = clock.setTimer(this.beatTick, next);
  };

  private hello(id: string, draining: boolean): HelloEnvelope {
    // `cq`: this library's instances read compact requests (docs/protocol.md, "Compact requests").
    const hello: HelloEnvelope = { v: 1, kind: 'hello', id, from: this.host.instanceId, inc: this.incarnation, ...this.order(), patterns: this.host.patterns(), events: this.host.events(), cq: 1 };
    return draining ? { ...hello, draining: true } : hello;
  }

  /** `seq` and `at` for the next `hello` or `bye`, with `signingKey` (see `stampMembership`). */
  private order(): { seq?: number; at?: number } {
    return this.host.stampMembership ? { seq: this.membershipSeq++, at: this.host.clock.now() } : {};
  }

  private publish(channel: string, encoded: string): Promise<number> {
    return this.coalescer!.publish(channel, encoded);
  }
}
