import { randomBytes } from 'node:crypto';
import type { Coalescer } from '../bus/coalescer.js';
import type { RedisBus } from '../bus/redis-bus.js';
import type { Clock, TimerHandle } from '../clock.js';
import { DuplicateInstanceError } from '../errors/duplicate-instance.error.js';
import { RedisPermissionError } from '../errors/redis-permission.error.js';
import type { BufferLogger } from '../logger.js';
import type { BufferChannels } from '../wire/channels.js';
import { encodeEnvelope, type ByeEnvelope, type HelloEnvelope, type PongEnvelope } from '../wire/envelope.js';

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
  /** The patterns it answers, and the events it handles (channel forms), for its hellos. */
  readonly patterns: () => string[];
  readonly events: () => string[];
}

/**
 * What an instance tells callers about itself, so that they know whom a request waits for: a
 * `hello` on joining, on each `who`, after a reconnect and after a freeze; a `pong` to each ping; a
 * `bye` on leaving. And the check that no other live process has its `instanceId`.
 */
export class Presence {
  /** Random per instance object: tells this process from an earlier one with the same `instanceId`. */
  readonly incarnation = randomBytes(8).toString('base64url');
  private thawTimer: TimerHandle | undefined;
  private coalescer: Coalescer | undefined;

  constructor(private readonly host: PresenceHost) {}

  /** The coalescer its envelopes leave through, once connected. */
  attach(coalescer: Coalescer): void {
    this.coalescer = coalescer;
  }

  /** Refuses to run beside another live process with the same id (more than `allowed` subscribers on its direct channel). */
  async ensureUniqueId(bus: RedisBus, allowed: number, subscribed: readonly string[]): Promise<void> {
    const { instanceId, namespace, channels } = this.host;
    let subscribers: number;
    try {
      subscribers = await bus.numsub(channels.direct(instanceId));
    } catch (error) {
      if (!(error instanceof RedisPermissionError)) throw error;
      this.host.logger.warn(`Cannot check that instance id "${instanceId}" is unique: Redis refused PUBSUB NUMSUB (${error.message}).`);
      return;
    }
    if (subscribers > allowed) {
      if (allowed > 0) await bus.unsubscribe(subscribed).catch(() => undefined);
      throw new DuplicateInstanceError(instanceId, namespace);
    }
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

  answerPing(replyTo: string, id: string): void {
    const pong: PongEnvelope = { v: 1, kind: 'pong', id, from: this.host.instanceId, inc: this.incarnation };
    void this.publish(replyTo, encodeEnvelope(pong)).catch(() => undefined);
  }

  /** Tells every caller this instance left; resolves with the PUBLISH. */
  bye(): Promise<number> {
    const bye: ByeEnvelope = { v: 1, kind: 'bye', id: this.incarnation, from: this.host.instanceId, inc: this.incarnation };
    return this.publish(this.host.channels.members(), encodeEnvelope(bye));
  }

  /**
   * A process that was frozen (SIGSTOP, a debugger, a very long pause) may have been taken for
   * silent by callers meanwhile: when a tick comes much later than scheduled, it says hello again.
   */
  watchForThaw(connected: () => boolean): void {
    const { clock, livenessTimeout } = this.host;
    const every = livenessTimeout / 4;
    let last = clock.now();
    const tick = (): void => {
      const now = clock.now();
      if (now - last > livenessTimeout && connected()) void this.announce();
      last = now;
      this.thawTimer = clock.setTimer(tick, every);
    };
    this.thawTimer = clock.setTimer(tick, every);
  }

  stopWatching(): void {
    if (this.thawTimer !== undefined) this.host.clock.clearTimer(this.thawTimer);
    this.thawTimer = undefined;
  }

  private hello(id: string, draining: boolean): HelloEnvelope {
    const hello: HelloEnvelope = { v: 1, kind: 'hello', id, from: this.host.instanceId, inc: this.incarnation, patterns: this.host.patterns(), events: this.host.events() };
    return draining ? { ...hello, draining: true } : hello;
  }

  private publish(channel: string, encoded: string): Promise<number> {
    return this.coalescer!.publish(channel, encoded);
  }
}
