import { EventEmitter } from 'node:events';
import { Redis, type Cluster, type RedisOptions } from 'ioredis';
import { ConnectionLostError } from '../errors/connection-lost.error.js';
import { RedisPermissionError } from '../errors/redis-permission.error.js';

export type BusStatus = 'connecting' | 'connected' | 'reconnecting' | 'disconnected' | 'closed';

export interface BusEvents {
  message: [channel: string, message: string];
  status: [status: BusStatus];
  /**
   * The subscriber connection, which had its subscriptions confirmed, closed: whatever was
   * published to its channels from now until it is back is lost. The publisher's own blips do not
   * raise this.
   */
  subscriberLost: [];
  error: [error: Error];
}

/** The ioredis clients under a bus, for diagnostics: one server (or Sentinel), or a cluster. */
export type BusClients = { publisher: Redis; subscriber: Redis } | { publisher: Cluster; subscribers: ReadonlyMap<string, Redis> };

/**
 * The seam between this library and Redis: publish, subscribe, and a status. Everything above it
 * speaks channels and strings: `IoredisBus` serves one server or a Sentinel-managed one,
 * `ClusterBus` a Redis Cluster (sharded pub/sub); `createBus` picks one from the options.
 */
export interface RedisBus {
  readonly status: BusStatus;
  /** Resolves when both connections are ready and subscriptions are confirmed by Redis. */
  connect(): Promise<void>;
  publish(channel: string, message: string): Promise<number>;
  subscribe(channels: readonly string[]): Promise<void>;
  unsubscribe(channels: readonly string[]): Promise<void>;
  /** How many clients are subscribed to `channel` (PUBSUB NUMSUB). */
  numsub(channel: string): Promise<number>;
  on<K extends keyof BusEvents>(event: K, listener: (...args: BusEvents[K]) => void): this;
  off<K extends keyof BusEvents>(event: K, listener: (...args: BusEvents[K]) => void): this;
  close(): Promise<void>;
  /** The underlying clients, for diagnostics. */
  unwrap(): BusClients;
}

export interface IoredisBusOptions {
  readonly redis: string | RedisOptions;
  readonly connectTimeout: number;
  /** Shown in `CLIENT LIST` to tell this library's connections apart. */
  readonly connectionName: string;
}

/**
 * `RedisBus` on two ioredis connections (a subscriber connection cannot publish).
 *
 * Differences from ioredis defaults, and why:
 * - `enableOfflineQueue: false` on the publisher: a request published while Redis is away would be
 *   replayed after reconnecting, long after its deadline; it fails at once with a typed error instead.
 * - "connected" is reported only once a PING on the subscriber has come back after ioredis's
 *   automatic re-subscribe: ioredis fires `ready` when the SUBSCRIBE commands are written, not
 *   acknowledged, and a request published before that would lose its replies.
 */
export class IoredisBus extends EventEmitter<BusEvents> implements RedisBus {
  private publisher: Redis | undefined;
  private subscriber: Redis | undefined;
  private connecting: Promise<void> | undefined;
  private current: BusStatus = 'disconnected';
  private everConnected = false;
  private closing = false;
  private subscriberConfirmed = false;
  private readonly publishesInFlight = new Set<(error: Error) => void>();

  constructor(private readonly options: IoredisBusOptions) {
    super();
  }

  get status(): BusStatus {
    return this.current;
  }

  connect(): Promise<void> {
    if (this.current === 'connected') return Promise.resolve();
    if (this.closing) return Promise.reject(new ConnectionLostError('the client was closed'));
    this.connecting ??= this.open();
    return this.connecting;
  }

  async publish(channel: string, message: string): Promise<number> {
    if (this.current !== 'connected' || this.publisher === undefined) {
      throw new ConnectionLostError(`cannot publish while the connection is ${this.current}`);
    }
    // With autoResendUnfulfilledCommands off, ioredis neither resends nor settles a command that was
    // in flight when the connection closed: the close settles it (see `settledByClose`).
    try {
      return await settledByClose(this.publishesInFlight, this.publisher.publish(channel, message));
    } catch (cause) {
      if (isPermissionError(cause)) throw new RedisPermissionError('PUBLISH', [channel], { cause });
      throw cause instanceof ConnectionLostError ? cause : new ConnectionLostError('PUBLISH failed', { cause });
    }
  }

  async subscribe(channels: readonly string[]): Promise<void> {
    if (channels.length === 0) return;
    try {
      await this.requireSubscriber().subscribe(...channels);
    } catch (cause) {
      if (isPermissionError(cause)) throw new RedisPermissionError('SUBSCRIBE', channels, { cause });
      throw cause;
    }
  }

  async unsubscribe(channels: readonly string[]): Promise<void> {
    if (channels.length === 0 || this.subscriber === undefined) return;
    await this.subscriber.unsubscribe(...channels);
  }

  async numsub(channel: string): Promise<number> {
    if (this.current !== 'connected' || this.publisher === undefined) {
      throw new ConnectionLostError(`cannot query subscribers while the connection is ${this.current}`);
    }
    try {
      const answer = (await this.publisher.call('PUBSUB', 'NUMSUB', channel)) as [string, number | string];
      return Number(answer[1]);
    } catch (cause) {
      if (isPermissionError(cause)) throw new RedisPermissionError('PUBSUB NUMSUB', [channel], { cause });
      throw new ConnectionLostError('PUBSUB NUMSUB failed', { cause });
    }
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.setStatus('closed');
    await Promise.all([quit(this.publisher), quit(this.subscriber)]);
    this.removeAllListeners('message');
  }

  unwrap(): BusClients {
    if (this.publisher === undefined || this.subscriber === undefined) {
      throw new Error('Not connected yet: call connect() (or startAllMicroservices()) before unwrap().');
    }
    return { publisher: this.publisher, subscriber: this.subscriber };
  }

  private async open(): Promise<void> {
    this.setStatus('connecting');
    const publisher = this.createConnection('pub', false);
    const subscriber = this.createConnection('sub', true);
    this.publisher = publisher;
    this.subscriber = subscriber;

    // Events of connections a timed-out attempt left behind must not move this bus's status.
    const current = (): boolean => this.publisher === publisher && this.subscriber === subscriber;
    subscriber.on('message', (channel: string, message: string) => {
      if (current()) this.emit('message', channel, message);
    });
    // After a reconnect ioredis re-subscribes by itself; a PING queued behind those SUBSCRIBE
    // commands returns only once Redis has processed them.
    subscriber.on('close', () => {
      if (!current()) return;
      const wasConfirmed = this.subscriberConfirmed;
      this.subscriberConfirmed = false;
      if (wasConfirmed && !this.closing) this.emit('subscriberLost');
    });
    subscriber.on('ready', () => {
      if (!current()) return;
      this.subscriberConfirmed = false;
      subscriber.ping().then(
        () => {
          if (!current()) return;
          this.subscriberConfirmed = true;
          this.refreshStatus();
        },
        () => undefined,
      );
    });
    publisher.on('close', () => {
      if (!current()) return;
      for (const cut of [...this.publishesInFlight]) cut(new ConnectionLostError('the connection closed while a PUBLISH was in flight; it is not sent again'));
    });
    for (const connection of [publisher, subscriber]) {
      const refresh = (): void => {
        if (current()) this.refreshStatus();
      };
      connection.on('ready', refresh);
      connection.on('close', refresh);
      connection.on('reconnecting', refresh);
      connection.on('end', refresh);
      // ioredis emits 'error' on every failed attempt; it is reported, and reconnecting goes on.
      connection.on('error', (error: Error) => {
        if (current() && this.listenerCount('error') > 0) this.emit('error', error);
      });
    }

    await untilConnected(this, this.options.connectTimeout, () => {
      // Stop these connections' retries: the next connect() opens new ones, and retries left
      // running would leak sockets and timers that keep the process alive after close().
      publisher.disconnect();
      subscriber.disconnect();
      // After the rejection has reached whoever awaits connect(), so they see this message.
      setImmediate(() => {
        if (!this.closing && this.connecting === undefined) this.setStatus('disconnected');
      });
      return new ConnectionLostError(
        `could not connect to ${describeRedis(this.options.redis)} within connectTimeout (${this.options.connectTimeout} ms); start Redis (or fix the address) first, or raise "connectTimeout" to wait longer`,
      );
    }, () => {
      publisher.connect().catch(() => undefined);
      subscriber.connect().catch(() => undefined);
    }).finally(() => {
      this.connecting = undefined;
    });
  }

  private createConnection(role: 'pub' | 'sub', isSubscriber: boolean): Redis {
    // One knob for "how long may connecting take": ioredis's own per-attempt timer follows ours.
    // disconnectTimeout: ioredis arms a timer on disconnect() that only a socket 'close' clears; a
    // socket already destroyed by a refused connect never closes again, and the timer would hold
    // the process open for 2 s after close().
    const base: RedisOptions = {
      lazyConnect: true,
      connectTimeout: this.options.connectTimeout,
      disconnectTimeout: 100,
      connectionName: `${this.options.connectionName}:${role}`,
    };
    // autoResendUnfulfilledCommands: a PUBLISH in flight when the publisher's connection dropped has
    // already been reported failed to its caller; ioredis would send it again after reconnecting.
    const overrides: RedisOptions = isSubscriber ? { autoResubscribe: true } : { enableOfflineQueue: false, autoResendUnfulfilledCommands: false };
    const { redis } = this.options;
    if (typeof redis === 'string') return new Redis(redis, { ...base, ...overrides });
    // Sentinel: without the failover detector a graceful failover (SENTINEL FAILOVER) leaves the
    // connections on the demoted master, now a replica, for ~11 s; a replica answers PUBLISH with
    // its own subscriber count, so completion would rest on a wrong count until then.
    const sentinel: RedisOptions = redis.sentinels === undefined ? {} : { failoverDetector: redis.failoverDetector ?? true };
    return new Redis({ ...redis, ...sentinel, ...base, ...overrides });
  }

  private requireSubscriber(): Redis {
    if (this.subscriber === undefined) throw new ConnectionLostError('not connected yet');
    return this.subscriber;
  }

  private refreshStatus(): void {
    if (this.closing) return;
    const publisher = this.publisher?.status;
    const subscriber = this.subscriber?.status;
    if (publisher === 'ready' && subscriber === 'ready' && this.subscriberConfirmed) {
      this.everConnected = true;
      this.setStatus('connected');
    } else if (publisher === 'end' || subscriber === 'end') {
      this.setStatus('disconnected');
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

/** How long a QUIT may take before the connection is simply dropped (Redis frozen, or a command it waits behind). */
const QUIT_TIMEOUT_MS = 1000;

async function quit(connection: Redis | undefined): Promise<void> {
  if (connection === undefined) return;
  if (connection.status === 'ready') {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([connection.quit().catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, QUIT_TIMEOUT_MS)))]);
    clearTimeout(timer);
  }
  // Also after QUIT: only disconnect() closes the connections to the sentinels that ioredis's
  // failover detector keeps open, which would otherwise hold the process alive after close().
  connection.disconnect();
}

/**
 * Resolves once `bus` reports `connected`, after `start` has begun connecting. Rejects when the bus
 * is closed meanwhile, or after `timeoutMs` with the error `timedOut` returns (having stopped the
 * connection attempts). Shared by every `RedisBus`.
 */
export function untilConnected(bus: EventEmitter<BusEvents>, timeoutMs: number, timedOut: () => Error, start: () => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(timedOut());
    }, timeoutMs);
    const onStatus = (status: BusStatus): void => {
      if (status === 'connected') {
        cleanup();
        resolve();
      } else if (status === 'closed') {
        cleanup();
        reject(new ConnectionLostError('the client was closed while connecting'));
      }
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      bus.off('status', onStatus);
    };
    bus.on('status', onStatus);
    start();
  });
}

/** The Redis address for messages, without credentials. */
export function describeRedis(redis: string | RedisOptions): string {
  if (typeof redis === 'string') {
    try {
      const url = new URL(redis);
      return `${url.protocol}//${url.host}`;
    } catch {
      return 'the "redis" address';
    }
  }
  if (redis.sentinels !== undefined) return `the master "${redis.name}" of the sentinels at ${redis.sentinels.map((s) => `${s.host ?? '127.0.0.1'}:${s.port ?? 26379}`).join(', ')}`;
  return redis.path ?? `${redis.tls ? 'rediss' : 'redis'}://${redis.host ?? '127.0.0.1'}:${redis.port ?? 6379}`;
}

export function isPermissionError(error: unknown): boolean {
  return error instanceof Error && /^(NOPERM|NOAUTH|WRONGPASS)\b/.test(error.message);
}

/**
 * Waits for a command, or for a close of its connection, whichever comes first: the close calls
 * the function registered in `inFlight` (while the command waits) with the error to settle it with.
 * For commands ioredis neither resends nor settles when their connection closes.
 */
export async function settledByClose<T>(inFlight: Set<(error: Error) => void> | undefined, sent: Promise<T>): Promise<T> {
  let cut!: (error: Error) => void;
  const closed = new Promise<never>((_, reject) => (cut = reject));
  inFlight?.add(cut);
  // When the close wins the race, ioredis still rejects the command later: not an unhandled rejection.
  sent.catch(() => undefined);
  try {
    return await Promise.race([sent, closed]);
  } finally {
    inFlight?.delete(cut);
  }
}
