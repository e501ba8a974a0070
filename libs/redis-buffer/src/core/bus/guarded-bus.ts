import { EventEmitter } from 'node:events';
import type { BusClients, BusEvents, BusStatus, RedisBus } from './redis-bus.js';
import { ReplayGuard } from '../wire/replay-guard.js';
import { MessageSigner, SIGNED_PREFIX } from '../wire/signing.js';
import type { PermissionNeeds } from './permission-check.js';

/**
 * Why the guard dropped an inbound message before it was parsed: too long; with `signingKey`,
 * not signed or signed with another key; a correctly signed message already received
 * (`replayed`), or one from a sender first heard with a clock stamp beyond `maxClockSkew` (`stale`);
 * without `signingKey`, a signed message, which this process cannot verify (`keyless`).
 */
export type InboundRejection = 'oversized' | 'unsigned' | 'forged' | 'replayed' | 'stale' | 'keyless';

export interface BusGuardOptions {
  readonly maxPayloadBytes: number;
  readonly signingKeys: ReadonlyArray<string | Buffer>;
  readonly maxClockSkew: number;
}

/** The log line for a message the guard dropped. */
export function describeRejection(reason: InboundRejection, channel: string, length: number, options: Pick<BusGuardOptions, 'maxPayloadBytes' | 'maxClockSkew'>): string {
  switch (reason) {
    case 'oversized':
      return `Dropped a ${length}-character message on "${channel}": over "maxPayloadBytes" (${options.maxPayloadBytes}).`;
    case 'replayed':
      return `Dropped a replayed message on "${channel}": correctly signed, but this process already received it (or a later one from the same sender on this channel).`;
    case 'stale':
      return `Dropped a stale signed message on "${channel}": the first from its sender here, and its clock stamp is more than "maxClockSkew" (${options.maxClockSkew} ms) from this host's clock: a replay, or hosts whose clocks are further apart than that.`;
    case 'unsigned':
      return `Dropped an unsigned message on "${channel}": signing is on ("signingKey"), and only messages signed with one of this process's keys are accepted.`;
    case 'keyless':
      return `Dropped a signed message on "${channel}": this process has no "signingKey", so it cannot verify it; give every process of the namespace the same key list.`;
    case 'forged':
      return `Dropped a forged message on "${channel}": its signature matches none of this process's keys ("signingKey"). When rotating keys, every process must accept a key before any signs with it: [old, new], then [new, old], then [new].`;
  }
}

/**
 * Room above `maxPayloadBytes` for what wraps a payload of exactly that size: the reply envelope's
 * fields and the signature wrapper.
 */
export const INBOUND_ALLOWANCE_BYTES = 1024;

/**
 * A `RedisBus` in front of another that checks what comes in before anything parses it, and signs
 * what goes out:
 * - an inbound message longer than `maxPayloadBytes` (+ `INBOUND_ALLOWANCE_BYTES`) is dropped
 *   unparsed, so a flood of huge messages costs a length check, not a JSON.parse;
 * - with `signingKey`, every published message is sealed (see `signing.ts`), and an inbound
 *   message that is unsigned or carries a wrong signature is dropped, and so is a correctly signed
 *   one that was received before or is too old to tell (see `replay-guard.ts`).
 * Each drop is reported to `onReject`, which counts and logs it.
 */
export class GuardedBus extends EventEmitter<BusEvents> implements RedisBus {
  private readonly signer: MessageSigner | undefined;
  private readonly replays: ReplayGuard | undefined;
  private readonly maxInboundLength: number;
  /** The inner bus's round trip, when it has one. */
  readonly ping?: () => Promise<void>;

  constructor(
    private readonly inner: RedisBus,
    options: BusGuardOptions,
    private readonly onReject: (reason: InboundRejection, channel: string, length: number) => void,
  ) {
    super();
    this.signer = options.signingKeys.length === 0 ? undefined : new MessageSigner(options.signingKeys);
    this.replays = this.signer === undefined ? undefined : new ReplayGuard(options.maxClockSkew);
    this.maxInboundLength = options.maxPayloadBytes + INBOUND_ALLOWANCE_BYTES;
    if (inner.ping !== undefined) this.ping = () => inner.ping!();
    inner.on('message', (channel, message) => this.onMessage(channel, message));
    inner.on('status', (status) => this.emit('status', status));
    inner.on('subscriberLost', () => this.emit('subscriberLost'));
    // Re-emitted only when someone listens: an 'error' event without a listener would throw.
    inner.on('error', (error) => {
      if (this.listenerCount('error') > 0) this.emit('error', error);
    });
  }

  get status(): BusStatus {
    return this.inner.status;
  }

  connect(): Promise<void> {
    return this.inner.connect();
  }

  publish(channel: string, message: string): Promise<number> {
    return this.inner.publish(channel, this.signer === undefined ? message : this.signer.seal(channel, message));
  }

  subscribe(channels: readonly string[]): Promise<void> {
    return this.inner.subscribe(channels);
  }

  unsubscribe(channels: readonly string[]): Promise<void> {
    return this.inner.unsubscribe(channels);
  }

  numsub(channel: string): Promise<number> {
    return this.inner.numsub(channel);
  }

  checkPermissions(probeChannel: string, needs: PermissionNeeds, namespace: string): Promise<void> {
    return this.inner.checkPermissions(probeChannel, needs, namespace);
  }

  async close(): Promise<void> {
    await this.inner.close();
    this.removeAllListeners('message');
  }

  unwrap(): BusClients {
    return this.inner.unwrap();
  }

  private onMessage(channel: string, message: string): void {
    // A string's length never exceeds its UTF-8 byte length, so this never drops a message in bounds.
    if (message.length > this.maxInboundLength) return this.onReject('oversized', channel, message.length);
    if (this.signer === undefined) {
      // Another process of the namespace signs: its envelopes are inside a wrapper this one cannot verify.
      if (message.startsWith(SIGNED_PREFIX)) return this.onReject('keyless', channel, message.length);
      return void this.emit('message', channel, message);
    }
    const opened = this.signer.open(channel, message);
    if (!('body' in opened)) return this.onReject(opened.failure, channel, message.length);
    const freshness = this.replays!.admit(channel, opened.stamp);
    if (freshness === 'fresh') this.emit('message', channel, opened.body);
    else this.onReject(freshness, channel, message.length);
  }
}
