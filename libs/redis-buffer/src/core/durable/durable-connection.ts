import type { Cluster, Redis, RedisOptions } from 'ioredis';
import { withTimeout } from '../async/bounded-wait.js';
import { ConnectionFactory, type RedisTarget } from '../bus/connection-factory.js';
import { keySlot } from '../bus/key-slot.js';
import { closePolitely } from '../bus/polite-close.js';
import { ConnectionLostError } from '../errors/connection-lost.error.js';
import { withDurableScripts, type DurableScripts } from './durable-scripts.js';

/** Where Redis is (one server, Sentinel or a cluster, as the module options say), and how this connection behaves. */
export interface DurableConnectionOptions extends RedisTarget {
  /** Shown in `CLIENT LIST`. */
  readonly connectionName: string;
  /**
   * Queue commands while reconnecting, and send again those cut off by a disconnect (consumers: an
   * acknowledgement sent after a blip still counts; every consumer script may safely run twice), or
   * fail both at once (publishers: the caller must learn now that its entry may not be accepted,
   * and decide; a publish sent again behind its back could add an entry twice).
   */
  readonly offlineQueue: boolean;
  /** Fails a command that has no answer after this many ms (publishers: a frozen Redis must not hang a publish). */
  readonly commandTimeout?: number;
}

/**
 * A connection for durable commands, with the durable scripts defined. On a Redis Cluster it is an
 * ioredis `Cluster`, which has the same command methods and routes each command by its first key:
 * every key of one stream shares a hash tag (see `DurableKeys`), so a script's keys are in one slot.
 * Its users call commands, `status`, `on`, `subscribe`, `quit` and `disconnect` only, which both have.
 */
export type DurableConnection = Redis & DurableScripts;

/** Opens a connection for durable commands through the one connection factory, and waits until it is ready. */
export async function openDurableConnection(options: DurableConnectionOptions): Promise<DurableConnection> {
  const connection = withDurableScripts(new ConnectionFactory(options).any(options.connectionName, commandSettings(options), options.offlineQueue ? {} : CLUSTER_WITHOUT_OFFLINE_QUEUE) as Redis);
  return ready(connection, options);
}

/** Closes a connection politely if it is up (waiting at most `boundMs` for Redis), at once otherwise. */
export async function closeDurableConnection(connection: Redis | Cluster | undefined, boundMs?: number): Promise<void> {
  await closePolitely(connection, boundMs);
}

/**
 * Waits for new entries on several streams (XREAD BLOCK), on connections of its own: a blocked
 * XREAD holds its connection. On a cluster, streams of different hash slots cannot be read by one
 * XREAD (CROSSSLOT), so each slot's streams are read on a connection of their own, all at once.
 */
export class StreamWaiter {
  private readonly connections = new Map<number, Redis>();
  /** The XREAD still blocked on each connection: a new wait joins it rather than queueing behind it. */
  private readonly blocked = new Map<number, Promise<unknown>>();
  private closed = false;

  private constructor(
    private readonly options: DurableConnectionOptions,
    private readonly cluster: boolean,
  ) {}

  static async open(options: DurableConnectionOptions): Promise<StreamWaiter> {
    const reader = new StreamWaiter(options, new ConnectionFactory(options).isCluster);
    // One server: its only connection is opened now, so a Redis that is away fails the start.
    if (!reader.cluster) await reader.connection(0);
    return reader;
  }

  /**
   * Resolves when one of `streams` has an entry after its id in `lastIds` (same order), or after
   * `blockMs`; rejects when Redis does. Only a wake-up: what XREAD returns is dropped unread (Redis
   * has no ids-only read, so it returns one entry per stream, COUNT 1, whole), and FETCH reads.
   */
  async read(streams: readonly string[], lastIds: readonly string[], blockMs: number): Promise<void> {
    const bySlot = new Map<number, number[]>();
    streams.forEach((stream, index) => {
      const slot = this.cluster ? keySlot(stream) : 0;
      const list = bySlot.get(slot) ?? [];
      list.push(index);
      bySlot.set(slot, list);
    });
    // Each wait is wrapped: an async function that returned the promise itself would adopt it,
    // and this would wait for every slot instead of the first.
    const waits = await Promise.all(
      [...bySlot].map(async ([slot, indexes]) => {
        let wait = this.blocked.get(slot);
        if (wait === undefined) {
          const connection = await this.connection(slot);
          const sent = connection.xread('COUNT', 1, 'BLOCK', blockMs, 'STREAMS', ...indexes.map((index) => streams[index]!), ...indexes.map((index) => lastIds[index]!));
          wait = sent;
          this.blocked.set(slot, sent);
          const forget = (): void => {
            if (this.blocked.get(slot) === sent) this.blocked.delete(slot);
          };
          sent.then(forget, forget);
        }
        return { wait };
      }),
    );
    await Promise.race(waits.map(({ wait }) => wait));
  }

  /** Ends every blocked XREAD at once (their promises may never settle) and closes the connections. */
  disconnect(): void {
    this.closed = true;
    for (const connection of this.connections.values()) connection.disconnect();
    this.connections.clear();
    this.blocked.clear();
  }

  private async connection(slot: number): Promise<Redis> {
    if (this.closed) throw new ConnectionLostError('the durable stream waiter was closed');
    let connection = this.connections.get(slot);
    if (connection === undefined) {
      const name = this.cluster ? `${this.options.connectionName}:${slot}` : this.options.connectionName;
      connection = new ConnectionFactory(this.options).any(name, commandSettings(this.options)) as Redis;
      this.connections.set(slot, connection);
      try {
        await ready(connection, this.options);
      } catch (error) {
        this.connections.delete(slot);
        throw error;
      }
    }
    return connection;
  }
}

/**
 * A publisher's Cluster: commands are not replayed after a failover (`retryDelayOnFailover: 0`),
 * but the Cluster's own queue stays on, because ioredis rejects a command routed to a node whose
 * connection is still being made when it is off ("Connection is closed" on the first publish to
 * each master); each node connection's `commandTimeout` and `maxRetriesPerRequest: 0` still bound it.
 */
const CLUSTER_WITHOUT_OFFLINE_QUEUE = { retryDelayOnFailover: 0, enableOfflineQueue: true } as const;

function commandSettings(options: DurableConnectionOptions): RedisOptions {
  return {
    enableOfflineQueue: options.offlineQueue,
    autoResendUnfulfilledCommands: options.offlineQueue,
    // Consumers: a blocked XREAD or a queued command waits for the reconnect (close() bounds it).
    // Publishers: 0 fails the commands in flight as soon as the connection drops. Without it,
    // ioredis 6 with autoResendUnfulfilledCommands off drops them at the reconnect without
    // settling their promises, and a publish cut off by a Redis restart would never end.
    maxRetriesPerRequest: options.offlineQueue ? null : 0,
    commandTimeout: options.commandTimeout,
  };
}

async function ready<T extends Redis>(connection: T, options: DurableConnectionOptions): Promise<T> {
  // ioredis reports every failed reconnect attempt as an 'error'; the users of this connection see
  // the failures of their own commands instead.
  connection.on('error', () => undefined);
  try {
    await withTimeout(
      connection.connect(),
      options.connectTimeout,
      () =>
        new ConnectionLostError(
          `could not connect to ${new ConnectionFactory(options).describe()} within connectTimeout (${options.connectTimeout} ms); start Redis (or fix the address) first, or raise "connectTimeout"`,
        ),
    );
  } catch (error) {
    connection.disconnect();
    throw error instanceof ConnectionLostError ? error : new ConnectionLostError('connecting failed', { cause: error });
  }
  return connection;
}
