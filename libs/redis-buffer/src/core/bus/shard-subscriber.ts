import type { Redis } from 'ioredis';
import { withTimeout } from '../async/bounded-wait.js';
import { ConnectionLostError } from '../errors/connection-lost.error.js';
import { closePolitely } from './polite-close.js';

export interface ShardEvents {
  message(channel: string, message: string): void;
  /** Every channel this connection holds is subscribed (after a (re)connect or a resync). */
  confirmed(): void;
  /** It lost its subscriptions; `hadConfirmed`: they had been confirmed. */
  lost(hadConfirmed: boolean): void;
  error(error: Error): void;
}

/**
 * One subscriber connection to one master of a Redis Cluster, holding the sharded channels
 * (SSUBSCRIBE) that master owns, for `ClusterBus`: it subscribes them once per slot (Redis refuses
 * one SSUBSCRIBE across slots), knows when Redis has acknowledged all of them, and reports when it
 * lost them (its connection closed, or Redis moved a slot away), so the bus can place them again.
 */
export class ShardSubscriber {
  readonly channels = new Set<string>();
  /** Connected, and every channel in `channels` was subscribed and acknowledged on this connection. */
  confirmed = false;
  /** A re-subscription is on the wire. */
  syncing = false;
  private generation = 0;
  private closed = false;

  constructor(
    readonly node: string,
    readonly connection: Redis,
    private readonly slotOf: (channel: string) => number,
    private readonly events: ShardEvents,
  ) {
    connection.on('smessage', (channel: string, message: string) => events.message(channel, message));
    connection.on('ready', () => this.resync());
    connection.on('close', () => this.invalidate());
    // An unsolicited SUNSUBSCRIBE (Redis moved a slot away) or a MOVED answer to SSUBSCRIBE.
    connection.on('moved', () => this.invalidate());
    connection.on('error', (error: Error) => events.error(error));
  }

  start(): void {
    this.connection.connect().catch(() => undefined);
  }

  /**
   * Subscribes `channels` here and resolves once Redis acknowledged them. Waits for the connection
   * at most `timeoutMs`; its (re)connection subscribes everything it holds anyway.
   */
  async add(channels: readonly string[], timeoutMs: number): Promise<void> {
    for (const channel of channels) this.channels.add(channel);
    await this.whenReady(timeoutMs);
    await this.ssubscribe(channels);
  }

  async remove(channels: readonly string[]): Promise<void> {
    for (const channel of channels) this.channels.delete(channel);
    if (this.connection.status !== 'ready') return;
    await Promise.all(bySlot(channels, this.slotOf).map((group) => this.connection.sunsubscribe(...group))).catch(() => undefined);
  }

  /** Subscribes every channel held (plus `extra`) again, then reports this connection confirmed. */
  resync(extra: readonly string[] = []): void {
    for (const channel of extra) this.channels.add(channel);
    const generation = ++this.generation;
    this.confirmed = false;
    if (this.connection.status !== 'ready' || this.closed) return;
    this.syncing = true;
    this.ssubscribe([...this.channels]).then(
      () => {
        if (generation !== this.generation || this.closed) return;
        this.syncing = false;
        this.confirmed = true;
        this.events.confirmed();
      },
      (error: Error) => {
        if (generation !== this.generation || this.closed) return;
        this.syncing = false;
        this.events.error(error);
        this.invalidate();
      },
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    this.confirmed = false;
    await closePolitely(this.connection);
  }

  private invalidate(): void {
    if (this.closed) return;
    const hadConfirmed = this.confirmed;
    this.confirmed = false;
    this.syncing = false;
    this.generation++;
    this.events.lost(hadConfirmed);
  }

  private async ssubscribe(channels: readonly string[]): Promise<void> {
    if (channels.length === 0) return;
    // One SSUBSCRIBE per slot: Redis refuses one whose channels hash to different slots.
    await Promise.all(bySlot(channels, this.slotOf).map((group) => this.connection.ssubscribe(...group)));
  }

  private whenReady(timeoutMs: number): Promise<void> {
    if (this.connection.status === 'ready') return Promise.resolve();
    let stopWatching = (): void => undefined;
    const ready = new Promise<void>((resolve, reject) => {
      const onEnd = (): void => reject(new ConnectionLostError(`the subscriber connection to ${this.node} ended`));
      this.connection.once('ready', resolve);
      this.connection.once('end', onEnd);
      stopWatching = () => {
        this.connection.off('ready', resolve);
        this.connection.off('end', onEnd);
      };
    });
    return withTimeout(ready, timeoutMs, () => new ConnectionLostError(`the subscriber connection to ${this.node} was not ready within connectTimeout (${timeoutMs} ms)`)).finally(stopWatching);
  }
}

export function bySlot(channels: readonly string[], slotOf: (channel: string) => number): string[][] {
  const groups = new Map<number, string[]>();
  for (const channel of channels) {
    const slot = slotOf(channel);
    const group = groups.get(slot) ?? [];
    group.push(channel);
    groups.set(slot, group);
  }
  return [...groups.values()];
}
