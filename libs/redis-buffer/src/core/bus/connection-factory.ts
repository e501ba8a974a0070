import { Cluster, Redis, type ClusterNode, type ClusterOptions, type RedisOptions } from 'ioredis';
import { ConnectionLostError } from '../errors/connection-lost.error.js';

/** Where Redis is, as the resolved module options say: one server (or a Sentinel-managed one), or a cluster. */
export interface RedisTarget {
  readonly redis: string | RedisOptions;
  /** Set for a Redis Cluster (then `redis` is unused). */
  readonly cluster: { readonly nodes: readonly ClusterNode[]; readonly options: ClusterOptions } | undefined;
  readonly connectTimeout: number;
}

/**
 * Builds every Redis connection the library opens (pub/sub, cluster nodes, sharded subscribers,
 * durable mode), so each honours the application's settings (TLS, username and password,
 * `protocol`, retry strategy, database…) the same way, and the library's own settings:
 * - `lazyConnect`: each user connects when it is ready to watch the attempt;
 * - one "how long may connecting take" knob: ioredis's per-attempt timer follows `connectTimeout`;
 * - `disconnectTimeout: 100`: ioredis arms a timer on disconnect() that only a socket 'close'
 *   clears; a socket already destroyed by a refused connect never closes again, and the timer
 *   would hold the process open for 2 s after close();
 * - `connectionName` (the user's name for this connection), shown in `CLIENT LIST`;
 * - Sentinel: the failover detector on unless the application set it, since without it a
 *   graceful failover (SENTINEL FAILOVER) leaves connections on the demoted master, now a
 *   replica, for ~11 s, and a replica answers PUBLISH with its own subscriber count.
 * The caller's `overrides` (offline queue, resending, resubscribing…) come last.
 *
 * Every connection to one server is also started again when ioredis ends it without asking
 * `retryStrategy` (see `restartWhenConnectorFails`).
 */
export class ConnectionFactory {
  constructor(private readonly target: RedisTarget) {}

  get isCluster(): boolean {
    return this.target.cluster !== undefined;
  }

  get connectTimeout(): number {
    return this.target.connectTimeout;
  }

  /** The application's `Cluster` options (empty for one server). */
  get clusterOptions(): ClusterOptions {
    return this.target.cluster?.options ?? {};
  }

  /** The cluster's seed nodes (empty for one server). */
  get clusterNodes(): readonly ClusterNode[] {
    return this.target.cluster?.nodes ?? [];
  }

  /** Where this connects, for messages, without credentials. */
  describe(): string {
    const { cluster } = this.target;
    if (cluster !== undefined) return `the Redis Cluster at ${cluster.nodes.map(describeNode).join(', ')}`;
    return describeRedis(this.target.redis);
  }

  /**
   * Host, port and whether TLS is on, for one server named directly (not through Sentinel, not a
   * Unix socket, not a cluster): what the start-up TLS diagnosis probes. `undefined` otherwise.
   */
  directServer(): { host: string; port: number; tls: boolean } | undefined {
    const { redis, cluster } = this.target;
    if (cluster !== undefined) return undefined;
    if (typeof redis === 'string') {
      try {
        const url = new URL(redis);
        if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') return undefined;
        return { host: url.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1', port: Number(url.port || 6379), tls: url.protocol === 'rediss:' };
      } catch {
        return undefined;
      }
    }
    if (redis.sentinels !== undefined || redis.path !== undefined) return undefined;
    return { host: redis.host ?? '127.0.0.1', port: redis.port ?? 6379, tls: redis.tls !== undefined };
  }

  /**
   * Whether the application set ioredis's `enableReadyCheck` itself (for one server, or for the
   * cluster's node connections): the library then leaves it as set.
   */
  get readyCheckChosen(): boolean {
    const options = this.target.cluster !== undefined ? this.target.cluster.options.redisOptions : typeof this.target.redis === 'string' ? undefined : this.target.redis;
    return options?.enableReadyCheck !== undefined;
  }

  /** Whether the server is found through Sentinel. */
  get viaSentinel(): boolean {
    return this.target.cluster === undefined && typeof this.target.redis !== 'string' && this.target.redis.sentinels !== undefined;
  }

  /** A connection to the one server (or the master Sentinel names). Not for a cluster. */
  server(connectionName: string, overrides: RedisOptions = {}): Redis {
    const { redis } = this.target;
    const options = this.settings(connectionName, overrides);
    if (typeof redis === 'string') return restartWhenConnectorFails(new Redis(redis, options), this.describe());
    const sentinel: RedisOptions = redis.sentinels === undefined ? {} : { failoverDetector: redis.failoverDetector ?? true };
    return restartWhenConnectorFails(new Redis({ ...redis, ...sentinel, ...options }), this.describe());
  }

  /**
   * Options of a connection to one node of the cluster: the application's `redisOptions`, then the
   * library's settings. For ioredis's `Cluster` (`redisOptions`) and for the connections this
   * library opens to one node itself.
   */
  nodeOptions(connectionName: string, overrides: RedisOptions = {}): RedisOptions {
    return { ...this.target.cluster?.options.redisOptions, ...this.settings(connectionName, overrides) };
  }

  /** A connection to one node of the cluster (`host:port`, as the slot map names it). */
  node(node: string, connectionName: string, overrides: RedisOptions = {}): Redis {
    const [host, port] = splitNodeKey(node);
    return restartWhenConnectorFails(new Redis({ ...this.nodeOptions(connectionName, overrides), host, port }), node);
  }

  /**
   * An ioredis `Cluster` on the seed nodes: the application's `Cluster` options, then `overrides`;
   * `nodeOverrides` apply to each of its node connections.
   */
  cluster(connectionName: string, overrides: ClusterOptions = {}, nodeOverrides: RedisOptions = {}): Cluster {
    const cluster = this.target.cluster;
    if (cluster === undefined) throw new Error('not a cluster');
    return new Cluster([...cluster.nodes], {
      ...cluster.options,
      ...overrides,
      lazyConnect: true,
      redisOptions: this.nodeOptions(connectionName, nodeOverrides),
    });
  }

  /** One server's connection, or a `Cluster`, whichever the options name. */
  any(connectionName: string, overrides: RedisOptions = {}, clusterOverrides: ClusterOptions = {}): Redis | Cluster {
    if (!this.isCluster) return this.server(connectionName, overrides);
    // Queueing while the cluster is away is the Cluster's decision; ioredis keeps each node
    // connection's own queue on so a command routed to a node still connecting waits for it.
    const { enableOfflineQueue, ...node } = overrides;
    return this.cluster(connectionName, { ...(enableOfflineQueue === undefined ? {} : { enableOfflineQueue }), ...clusterOverrides }, node);
  }

  private settings(connectionName: string, overrides: RedisOptions): RedisOptions {
    return {
      lazyConnect: true,
      connectTimeout: this.target.connectTimeout,
      disconnectTimeout: 100,
      connectionName,
      ...overrides,
    };
  }
}

/**
 * Starts `connection` again when ioredis ends it after it had been ready, without its socket closing
 * first and without anyone calling `disconnect()` or `quit()`: then its connector failed, and ioredis
 * does not ask `retryStrategy` but stays in `end` for good. With Sentinel this happens when a
 * failover is announced (`+switch-master`, which the failover detector acts on) while a
 * reconnection attempt is asking a sentinel for the master: the attempt throws "Connection is
 * closed". Left so, an instance stays subscribed (counted by every request) with a publisher that
 * never comes back, or a caller stays `disconnected`. The application's `retryStrategy` gives the
 * delay, and when it gives up, so does this.
 */
function restartWhenConnectorFails(connection: Redis, where: string): Redis {
  const internals = connection as unknown as { manuallyClosing?: boolean; retryAttempts?: number };
  let wasReady = false;
  let restart: ReturnType<typeof setTimeout> | undefined;
  // Closing the connection cancels a restart still to come.
  const disconnect = connection.disconnect.bind(connection);
  connection.disconnect = (reconnect?: boolean): void => {
    if (restart !== undefined && reconnect !== true) clearTimeout(restart);
    restart = undefined;
    disconnect(reconnect);
  };
  // ioredis reports 'close' before 'end' whenever the socket closed (then retryStrategy was asked).
  let socketClosed = false;
  connection.on('ready', () => (wasReady = true));
  connection.on('connecting', () => (socketClosed = false));
  connection.on('close', () => (socketClosed = true));
  connection.on('end', () => {
    if (!wasReady || socketClosed || internals.manuallyClosing === true) return;
    const strategy = connection.options.retryStrategy;
    const delay: unknown = typeof strategy === 'function' ? strategy(Math.max(1, internals.retryAttempts ?? 1)) : undefined;
    if (typeof delay !== 'number') return;
    if (connection.listenerCount('error') > 0) {
      const name = connection.options.connectionName === undefined ? '' : ` "${connection.options.connectionName}"`;
      connection.emit('error', new ConnectionLostError(`ioredis ended the connection${name} to ${where} while reconnecting, without retrying; it is opened again in ${delay} ms`));
    }
    // Not unref'd: with every connection ended, this timer may be all that keeps the process alive.
    restart = setTimeout(() => {
      restart = undefined;
      if (connection.status === 'end' && internals.manuallyClosing !== true) connection.connect().catch(() => undefined);
    }, delay);
  });
  return connection;
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

export function nodeKey(options: { host?: string; port?: number }): string {
  return `${options.host ?? '127.0.0.1'}:${options.port ?? 6379}`;
}

/** `host:port`, with IPv6 hosts (which hold colons) split at the last colon. */
export function splitNodeKey(key: string): [string, number] {
  const at = key.lastIndexOf(':');
  return [key.slice(0, at), Number(key.slice(at + 1))];
}

function describeNode(node: ClusterNode): string {
  if (typeof node === 'number') return `127.0.0.1:${node}`;
  if (typeof node === 'string') return node.replace(/\/\/[^@/]*@/, '//');
  return nodeKey(node);
}
