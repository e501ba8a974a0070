import { EventEmitter } from 'node:events';
import type { Cluster, Redis } from 'ioredis';
import { answeredOrCut, settledByClose, withTimeout } from '../async/bounded-wait.js';
import { Slots } from '../slots.js';
import { ConnectionLostError } from '../errors/connection-lost.error.js';
import { InvalidOptionsError } from '../errors/invalid-options.error.js';
import { RedisPermissionError } from '../errors/redis-permission.error.js';
import { endsStartUp } from '../errors/start-failure.js';
import { BusStatusMachine, type BusStatus } from './bus-status.js';
import type { ConnectionFactory } from './connection-factory.js';
import { isPermissionError, namespaceOfChannel, runPermissionProbes, type PermissionNeeds } from './permission-check.js';
import { abandonConnecting, closePolitely } from './polite-close.js';
import { plainClientOnTlsPort, speaksPlainRedis, speaksTls, tlsClientOnPlainPort, tlsFailure } from './tls-failure.js';

export { isPermissionError } from './permission-check.js';

export type { BusStatus } from './bus-status.js';

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
  /**
   * Once connected, before subscribing anything: checks harmlessly (on `probeChannel`, which nobody
   * subscribes to) that the Redis user may run every command `needs` asks for, and rejects with a
   * `RedisPermissionError` naming the first it may not.
   */
  checkPermissions(probeChannel: string, needs: PermissionNeeds, namespace: string): Promise<void>;
  on<K extends keyof BusEvents>(event: K, listener: (...args: BusEvents[K]) => void): this;
  off<K extends keyof BusEvents>(event: K, listener: (...args: BusEvents[K]) => void): this;
  close(): Promise<void>;
  /** The underlying clients, for diagnostics. */
  unwrap(): BusClients;
  /**
   * A round trip on every connection that delivers messages (PING, allowed while subscribed): it
   * answers only once Redis has read it and sent what it queued before. Optional: a bus without it
   * is not watched for cuts that close no socket.
   */
  ping?(): Promise<void>;
}

export interface IoredisBusOptions {
  /** Builds the connections, to one server or to the master Sentinel names. */
  readonly connections: ConnectionFactory;
  /** Shown in `CLIENT LIST` to tell this library's connections apart. */
  readonly connectionName: string;
}

/**
 * What both buses share: the status machine, reported as `status` events, and a `connect()` that
 * runs the bus's own `open()` once however many callers wait.
 */
export abstract class StatusReportingBus extends EventEmitter<BusEvents> {
  protected readonly state = new BusStatusMachine((status) => this.emit('status', status));

  get status(): BusStatus {
    return this.state.current;
  }

  connect(): Promise<void> {
    return this.state.attempt(() => this.open());
  }

  /** Opens the connections and confirms the subscriptions: "connected" when it resolves. */
  protected abstract open(): Promise<void>;
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
export class IoredisBus extends StatusReportingBus implements RedisBus {
  private publisher: Redis | undefined;
  private subscriber: Redis | undefined;
  private subscriberConfirmed = false;
  /** The server is known not to be a cluster node (asked once, on the first connection). */
  private modeChecked = false;
  /** A reset at start was already checked for a TLS port. */
  private tlsDiagnosed = false;
  // PUBLISHes and PUBSUB NUMSUBs waiting for an answer: a close of the publisher settles them.
  private readonly commandsInFlight = new Slots<(error: Error) => void>();

  constructor(private readonly options: IoredisBusOptions) {
    super();
  }

  async publish(channel: string, message: string): Promise<number> {
    if (this.state.current !== 'connected' || this.publisher === undefined) {
      throw new ConnectionLostError(`cannot publish while the connection is ${this.state.current}`);
    }
    // With autoResendUnfulfilledCommands off, ioredis neither resends nor settles a command that was
    // in flight when the connection closed: the close settles it (see `settledByClose`).
    try {
      return await settledByClose(this.commandsInFlight, this.publisher.publish(channel, message));
    } catch (cause) {
      if (isPermissionError(cause)) throw new RedisPermissionError('PUBLISH', [channel], { cause, namespace: namespaceOfChannel(channel) });
      throw cause instanceof ConnectionLostError ? cause : new ConnectionLostError('PUBLISH failed', { cause });
    }
  }

  async subscribe(channels: readonly string[]): Promise<void> {
    if (channels.length === 0) return;
    try {
      await this.requireSubscriber().subscribe(...channels);
    } catch (cause) {
      if (isPermissionError(cause)) throw new RedisPermissionError('SUBSCRIBE', channels, { cause, namespace: namespaceOfChannel(channels[0]!) });
      throw cause;
    }
  }

  async unsubscribe(channels: readonly string[]): Promise<void> {
    if (channels.length === 0 || this.subscriber === undefined) return;
    await this.subscriber.unsubscribe(...channels);
  }

  async numsub(channel: string): Promise<number> {
    if (this.state.current !== 'connected' || this.publisher === undefined) {
      throw new ConnectionLostError(`cannot query subscribers while the connection is ${this.state.current}`);
    }
    try {
      // ioredis would leave it waiting for good if the connection closed: a start-up asks this.
      const answer = (await answeredOrCut(this.commandsInFlight, this.publisher.call('PUBSUB', 'NUMSUB', channel), 'PUBSUB NUMSUB', this.options.connections.connectTimeout)) as [string, number | string];
      return Number(answer[1]);
    } catch (cause) {
      if (isPermissionError(cause)) throw new RedisPermissionError('PUBSUB NUMSUB', [channel], { cause, namespace: namespaceOfChannel(channel) });
      throw new ConnectionLostError('PUBSUB NUMSUB failed', { cause });
    }
  }

  async checkPermissions(probeChannel: string, needs: PermissionNeeds, namespace: string): Promise<void> {
    const publisher = this.publisher;
    const subscriber = this.subscriber;
    if (this.state.current !== 'connected' || publisher === undefined || subscriber === undefined) {
      throw new ConnectionLostError(`cannot check permissions while the connection is ${this.state.current}`);
    }
    // PING needs no probe: "connected" waited for the subscriber's PING, and a refused one fails connect().
    const { connections } = this.options;
    await runPermissionProbes(
      [
        // Through Sentinel, ioredis checks with INFO that the server it was sent to is the master;
        // refused, it skips that check (and warns on the console): a demoted master would go unnoticed.
        ...(connections.viaSentinel && publisher.options.enableReadyCheck !== false ? [{ command: 'INFO', channels: [], run: () => publisher.info('replication') }] : []),
        { command: 'PUBLISH', channels: [probeChannel], run: () => publisher.publish(probeChannel, 'probe') },
        ...(needs.countSubscribers ? [{ command: 'PUBSUB NUMSUB', channels: [probeChannel], run: () => publisher.call('PUBSUB', 'NUMSUB', probeChannel) }] : []),
        // Unsubscribing a channel the connection does not hold changes nothing.
        ...(needs.unsubscribe ? [{ command: 'UNSUBSCRIBE', channels: [probeChannel], run: () => subscriber.unsubscribe(probeChannel) }] : []),
      ],
      namespace,
      this.options.connections.connectTimeout,
    );
  }

  async close(): Promise<void> {
    if (this.state.closed) return;
    this.state.close();
    await Promise.all([closePolitely(this.publisher), closePolitely(this.subscriber)]);
    this.removeAllListeners('message');
  }

  async ping(): Promise<void> {
    if (this.subscriber === undefined) throw new ConnectionLostError('not connected');
    await this.subscriber.ping();
  }

  unwrap(): BusClients {
    if (this.publisher === undefined || this.subscriber === undefined) {
      throw new Error('Not connected yet: call connect() (or startAllMicroservices()) before unwrap().');
    }
    return { publisher: this.publisher, subscriber: this.subscriber };
  }

  protected async open(): Promise<void> {
    this.state.connecting();
    this.tlsDiagnosed = false;
    const { connections, connectionName } = this.options;
    // autoResendUnfulfilledCommands: a PUBLISH in flight when the publisher's connection dropped
    // has already been reported failed to its caller; ioredis would send it again after reconnecting.
    // ioredis's ready check runs INFO, which a least-privilege ACL user may not run (ioredis then
    // prints a warning on every connection). Pub/sub needs no loaded dataset: PUBLISH, SUBSCRIBE
    // and PUBSUB are served while Redis loads, and the confirming PING below waits out LOADING.
    // Through Sentinel the check stays: it is how ioredis verifies the role of the server named.
    const readyCheck = connections.readyCheckChosen || connections.viaSentinel ? {} : { enableReadyCheck: false };
    const publisher = connections.server(`${connectionName}:pub`, { ...readyCheck, enableOfflineQueue: false, autoResendUnfulfilledCommands: false });
    const subscriber = connections.server(`${connectionName}:sub`, { ...readyCheck, autoResubscribe: true });
    this.publisher = publisher;
    this.subscriber = subscriber;

    // Events of connections a timed-out attempt left behind must not move this bus's status.
    const current = (): boolean => this.publisher === publisher && this.subscriber === subscriber;
    // What connected cannot serve this configuration (a cluster node, a TLS mismatch, a refused
    // PING) fails connect() at once rather than by connectTimeout.
    let refuse!: (error: Error) => void;
    const refused = new Promise<never>((_, reject) => (refuse = reject));
    const failAtStart = (error: Error): void => {
      if (current() && !this.state.everConnected) refuse(error);
    };
    subscriber.on('message', (channel: string, message: string) => {
      if (current()) this.emit('message', channel, message);
    });
    // After a reconnect ioredis re-subscribes by itself; a PING queued behind those SUBSCRIBE
    // commands returns only once Redis has processed them.
    subscriber.on('close', () => {
      if (!current()) return;
      const wasConfirmed = this.subscriberConfirmed;
      this.subscriberConfirmed = false;
      if (wasConfirmed && !this.state.closed) this.emit('subscriberLost');
    });
    const confirm = (): void => {
      subscriber.ping().then(
        () => {
          if (!current()) return;
          this.subscriberConfirmed = true;
          this.refreshStatus();
        },
        (error: Error) => {
          if (!current()) return;
          if (isPermissionError(error)) {
            // At start it fails connect(); later (the ACL changed) the bus stays unconfirmed, and says why.
            const refusal = new RedisPermissionError('PING', [], { cause: error });
            failAtStart(refusal);
            if (this.state.everConnected && this.listenerCount('error') > 0) this.emit('error', refusal);
          }
          // LOADING (Redis restarted and reads its dataset): asked again until it answers.
          else if (subscriber.status === 'ready') setTimeout(() => current() && subscriber.status === 'ready' && !this.subscriberConfirmed && confirm(), 100);
        },
      );
    };
    subscriber.on('ready', () => {
      if (!current()) return;
      this.subscriberConfirmed = false;
      confirm();
    });
    // A cluster node accepts PUBLISH and SUBSCRIBE, but a classic PUBLISH there counts only that
    // node's subscribers: completion would rest on a wrong number. Refused before "connected".
    publisher.once('ready', () => {
      if (!current()) return;
      checkNotClusterNode(publisher, connections.describe()).then(
        () => {
          if (!current()) return;
          this.modeChecked = true;
          this.refreshStatus();
        },
        (error: Error) => {
          if (current()) refuse(error);
        },
      );
    });
    publisher.on('close', () => {
      if (!current()) return;
      for (const cut of this.commandsInFlight.values()) cut(new ConnectionLostError('the connection closed while a PUBLISH or PUBSUB NUMSUB was in flight; it is not sent again'));
    });
    for (const connection of [publisher, subscriber]) {
      const refresh = (): void => {
        if (current()) this.refreshStatus();
      };
      connection.on('ready', refresh);
      connection.on('close', refresh);
      connection.on('reconnecting', refresh);
      connection.on('end', refresh);
      // ioredis emits 'error' on every failed attempt; it is reported, and reconnecting goes on,
      // except at start for a TLS failure, which waiting does not cure.
      connection.on('error', (error: Error) => {
        if (current() && this.listenerCount('error') > 0) this.emit('error', error);
        if (!this.state.everConnected) this.diagnoseAtStart(error, failAtStart);
      });
    }
    const tlsOnPlain = this.watchHandshake(failAtStart);

    await untilConnected(this, connections.connectTimeout, () => {
      // Stop these connections' retries: the next connect() opens new ones, and retries left
      // running would leak sockets and timers that keep the process alive after close().
      publisher.disconnect();
      subscriber.disconnect();
      // After the rejection has reached whoever awaits connect(), so they see this message.
      setImmediate(() => {
        if (!this.state.attempting) this.state.abandoned();
      });
      return new ConnectionLostError(
        `could not connect to ${connections.describe()} within connectTimeout (${connections.connectTimeout} ms); start Redis (or fix the address) first, or raise "connectTimeout" to wait longer`,
      );
    }, () => {
      publisher.connect().catch(() => undefined);
      subscriber.connect().catch(() => undefined);
    }, refused).finally(() => clearTimeout(tlsOnPlain)).catch((error: unknown) => {
      if (endsStartUp(error)) {
        abandonConnecting(publisher);
        abandonConnecting(subscriber);
        // After the rejection has reached whoever awaits connect(), so they see this error.
        setImmediate(() => {
          if (!this.state.attempting) this.state.abandoned();
        });
      }
      throw error;
    });
  }

  /**
   * A TLS failure at start is reported as one: a certificate or handshake error at once; a reset
   * of a plain connection, when the port turns out to complete a TLS handshake.
   */
  private diagnoseAtStart(error: Error, fail: (error: Error) => void): void {
    const where = this.options.connections.describe();
    const tls = tlsFailure(error, where);
    if (tls !== undefined) return fail(tls);
    const server = this.options.connections.directServer();
    if (server === undefined || server.tls || (error as NodeJS.ErrnoException).code !== 'ECONNRESET' || this.tlsDiagnosed) return;
    this.tlsDiagnosed = true;
    void speaksTls(server, Math.min(1000, this.options.connections.connectTimeout)).then((tlsPort) => {
      if (tlsPort) fail(plainClientOnTlsPort(where, error));
    });
  }

  /**
   * A TLS client on a plain port hears nothing back (the server waits for a command line that never
   * ends), so nothing fails: halfway through connectTimeout without a connection, the port is
   * asked whether it speaks plain Redis. Returns the timer, for clearing.
   */
  private watchHandshake(fail: (error: Error) => void): ReturnType<typeof setTimeout> | undefined {
    const server = this.options.connections.directServer();
    if (server === undefined || !server.tls) return undefined;
    const timeoutMs = this.options.connections.connectTimeout;
    const timer = setTimeout(() => {
      if (this.state.everConnected || this.publisher?.status === 'ready') return;
      void speaksPlainRedis(server, Math.min(1000, timeoutMs / 2)).then((plain) => {
        if (plain) fail(tlsClientOnPlainPort(this.options.connections.describe()));
      });
    }, timeoutMs / 2);
    timer.unref();
    return timer;
  }

  private requireSubscriber(): Redis {
    if (this.subscriber === undefined) throw new ConnectionLostError('not connected yet');
    return this.subscriber;
  }

  private refreshStatus(): void {
    const publisher = this.publisher?.status;
    const subscriber = this.subscriber?.status;
    this.state.refresh(publisher === 'ready' && subscriber === 'ready' && this.subscriberConfirmed && this.modeChecked, publisher === 'end' || subscriber === 'end');
  }
}

/**
 * Resolves once `bus` reports `connected`, after `start` has begun connecting. Rejects when the bus
 * is closed meanwhile, when `refused` rejects (what it connected to cannot serve), or after
 * `timeoutMs` with the error `timedOut` returns (having stopped the connection attempts). Shared
 * by every `RedisBus`.
 */
export function untilConnected(bus: EventEmitter<BusEvents>, timeoutMs: number, timedOut: () => Error, start: () => void, refused?: Promise<never>): Promise<void> {
  let stopWatching = (): void => undefined;
  const connected = new Promise<void>((resolve, reject) => {
    const onStatus = (status: BusStatus): void => {
      if (status === 'connected') resolve();
      else if (status === 'closed') reject(new ConnectionLostError('the client was closed while connecting'));
    };
    bus.on('status', onStatus);
    stopWatching = () => bus.off('status', onStatus);
  });
  start();
  return withTimeout(refused === undefined ? connected : Promise.race([connected, refused]), timeoutMs, timedOut).finally(stopWatching);
}

/**
 * Rejects with an `InvalidOptionsError` when `connection` is a node of a Redis Cluster. A server
 * that does not let this user run INFO is given the benefit of the doubt.
 */
async function checkNotClusterNode(connection: Redis, where: string): Promise<void> {
  let info: string;
  try {
    info = await connection.info('cluster');
  } catch {
    return;
  }
  if (/^cluster_enabled:1\b/m.test(info)) {
    throw new InvalidOptionsError(
      'redis',
      `${where} is a node of a Redis Cluster (INFO says cluster_enabled:1), where a PUBLISH reaches every node but counts only that node's subscribers; give the cluster's nodes as "cluster" ({ cluster: { nodes: [{ host, port }] } }) instead of "redis"`,
    );
  }
}
