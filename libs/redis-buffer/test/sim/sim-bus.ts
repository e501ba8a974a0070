import { EventEmitter } from 'node:events';
import type { Clock } from '../../src/core/clock.js';
import { ConnectionLostError } from '../../src/core/errors/connection-lost.error.js';
import type { BusClients, BusEvents, BusStatus, RedisBus } from '../../src/core/bus/redis-bus.js';
import type { SimConnection, SimRedis } from './sim-redis.js';
import type { SimOwner } from './scheduler.js';

/** How one process's connections behave on the network. */
export interface SimNetwork {
  /** Milliseconds a message spends in flight on a new connection, per direction; drawn per message. */
  delay(process: string, role: 'pub' | 'sub', direction: 'up' | 'down'): () => number;
  /** Milliseconds before a reset connection is opened again (ioredis's backoff). */
  reconnectDelay(): number;
  /** Told of every connection opened (a partitioned process's new connections are cut off too). */
  opened(process: string, connection: SimConnection): void;
}

/**
 * `RedisBus` for one simulated process, with the behaviour `IoredisBus` has over ioredis: two
 * connections (publisher, subscriber); `connected` only once the subscriber's subscriptions are
 * confirmed; on a reset, `reconnecting`, `subscriberLost` if the subscriber had been confirmed,
 * publishes in flight rejected with `ConnectionLostError`, then a new connection that subscribes
 * again to every channel (ioredis's `autoResubscribe`) and reports `connected` after a PING.
 */
export class SimBus extends EventEmitter<BusEvents> implements RedisBus {
  private current: BusStatus = 'disconnected';
  private publisher: SimConnection | undefined;
  private subscriber: SimConnection | undefined;
  private publisherReady = false;
  private subscriberConfirmed = false;
  private everConnected = false;
  private closing = false;
  /** Every channel the client wants (what ioredis re-subscribes to after a reconnect). */
  private readonly wanted = new Set<string>();
  /** subscribe() calls waiting for a subscriber connection. */
  private waitingForSubscriber: Array<() => void> = [];
  private connecting: Promise<void> | undefined;
  /** Every connection this bus opened, for faults aimed at this process. */
  readonly opened: SimConnection[] = [];

  constructor(
    private readonly redis: SimRedis,
    private readonly process: SimOwner,
    private readonly clock: Clock,
    private readonly network: SimNetwork,
  ) {
    super();
  }

  get status(): BusStatus {
    return this.current;
  }

  /** The connections in use now (publisher, subscriber). */
  get live(): SimConnection[] {
    return [this.publisher, this.subscriber].filter((connection): connection is SimConnection => connection !== undefined && connection.clientOpen);
  }

  connect(): Promise<void> {
    if (this.current === 'connected') return Promise.resolve();
    if (this.closing) return Promise.reject(new ConnectionLostError('the client was closed'));
    this.connecting ??= new Promise<void>((resolve, reject) => {
      const onStatus = (status: BusStatus): void => {
        if (status === 'connected' || status === 'closed') {
          this.off('status', onStatus);
          this.connecting = undefined;
          if (status === 'connected') resolve();
          else reject(new ConnectionLostError('the client was closed while connecting'));
        }
      };
      this.on('status', onStatus);
      this.setStatus('connecting');
      this.openPublisher();
      this.openSubscriber();
    });
    return this.connecting;
  }

  async publish(channel: string, message: string): Promise<number> {
    const publisher = this.publisher;
    if (this.current !== 'connected' || publisher === undefined) throw new ConnectionLostError(`cannot publish while the connection is ${this.current}`);
    try {
      return await publisher.command({ op: 'publish', channel, message });
    } catch (cause) {
      throw new ConnectionLostError('the connection closed while a PUBLISH was in flight; it is not sent again', { cause });
    }
  }

  async subscribe(channels: readonly string[]): Promise<void> {
    if (channels.length === 0) return;
    for (const channel of channels) this.wanted.add(channel);
    await this.onSubscriber((subscriber) => subscriber.command({ op: 'subscribe', channels }));
  }

  async unsubscribe(channels: readonly string[]): Promise<void> {
    if (channels.length === 0) return;
    for (const channel of channels) this.wanted.delete(channel);
    const subscriber = this.subscriber;
    if (subscriber === undefined || !subscriber.clientOpen) return;
    await subscriber.command({ op: 'unsubscribe', channels }).catch(() => undefined);
  }

  /** The simulated Redis has no ACL: every command is allowed. */
  async checkPermissions(): Promise<void> {}

  async numsub(channel: string): Promise<number> {
    const publisher = this.publisher;
    if (this.current !== 'connected' || publisher === undefined) throw new ConnectionLostError(`cannot query subscribers while the connection is ${this.current}`);
    try {
      return await publisher.command({ op: 'numsub', channel });
    } catch (cause) {
      throw new ConnectionLostError('PUBSUB NUMSUB failed', { cause });
    }
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.setStatus('closed');
    for (const connection of this.live) connection.closeByClient();
    this.removeAllListeners('message');
  }

  /** The process died: its sockets close, nothing of it runs any more. */
  kill(): void {
    this.closing = true;
    for (const connection of this.live) connection.killed();
  }

  unwrap(): BusClients {
    throw new Error('A simulated bus has no ioredis clients.');
  }

  /** Runs `command` on the subscriber connection, once there is one that works (as ioredis's offline queue would). */
  private onSubscriber(command: (subscriber: SimConnection) => Promise<number>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const attempt = (): void => {
        if (this.closing) return reject(new ConnectionLostError('the client was closed'));
        const subscriber = this.subscriber;
        if (subscriber === undefined || !subscriber.clientOpen) {
          this.waitingForSubscriber.push(attempt);
          return;
        }
        // A reset in between: the new connection subscribes to everything wanted anyway.
        command(subscriber).then(() => resolve(), () => this.waitingForSubscriber.push(attempt));
      };
      attempt();
    });
  }

  private openPublisher(): void {
    const connection = this.open('pub');
    this.publisher = connection;
    this.publisherReady = false;
    connection.onReset = () => {
      if (this.publisher !== connection) return;
      this.publisherReady = false;
      this.refreshStatus();
      this.reopenLater(() => this.openPublisher());
    };
    connection.command({ op: 'hello' }).then(
      () => {
        if (this.publisher !== connection) return;
        this.publisherReady = true;
        this.refreshStatus();
      },
      () => undefined,
    );
  }

  private openSubscriber(): void {
    const connection = this.open('sub');
    this.subscriber = connection;
    this.subscriberConfirmed = false;
    connection.onMessage = (channel, message) => {
      if (this.subscriber === connection && !this.closing) this.emit('message', channel, message);
    };
    connection.onReset = () => {
      if (this.subscriber !== connection) return;
      const wasConfirmed = this.subscriberConfirmed;
      this.subscriberConfirmed = false;
      if (wasConfirmed && !this.closing) this.emit('subscriberLost');
      this.refreshStatus();
      this.reopenLater(() => this.openSubscriber());
    };
    void connection.command({ op: 'hello' }).catch(() => undefined);
    if (this.wanted.size > 0) void connection.command({ op: 'subscribe', channels: [...this.wanted] }).catch(() => undefined);
    // Queued behind the re-subscribe: its answer means the subscriptions are in place.
    connection.command({ op: 'ping' }).then(
      () => {
        if (this.subscriber !== connection) return;
        this.subscriberConfirmed = true;
        for (const waiting of this.waitingForSubscriber.splice(0)) waiting();
        this.refreshStatus();
      },
      () => undefined,
    );
  }

  private reopenLater(reopen: () => void): void {
    if (this.closing) return;
    this.clock.setTimer(() => {
      if (!this.closing) reopen();
    }, this.network.reconnectDelay());
  }

  private open(role: 'pub' | 'sub'): SimConnection {
    const name = `${this.process.name}:${role}`;
    const connection = this.redis.connection(name, this.process, this.network.delay(this.process.name, role, 'up'), this.network.delay(this.process.name, role, 'down'));
    this.opened.push(connection);
    this.network.opened(this.process.name, connection);
    return connection;
  }

  private refreshStatus(): void {
    if (this.closing) return;
    if (this.publisherReady && this.subscriberConfirmed && this.publisher?.clientOpen === true && this.subscriber?.clientOpen === true) {
      this.everConnected = true;
      this.setStatus('connected');
    } else {
      this.setStatus(this.everConnected ? 'reconnecting' : 'connecting');
    }
  }

  private setStatus(status: BusStatus): void {
    if (status === this.current) return;
    this.current = status;
    this.emit('status', status);
  }
}
