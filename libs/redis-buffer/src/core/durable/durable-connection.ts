import { Redis, type RedisOptions } from 'ioredis';
import { ConnectionLostError } from '../errors/connection-lost.error.js';
import { describeRedis } from '../bus/redis-bus.js';
import { withDurableScripts, type DurableScripts } from './durable-scripts.js';

export interface DurableConnectionOptions {
  readonly redis: string | RedisOptions;
  readonly connectTimeout: number;
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

/** Opens an ioredis connection with the durable scripts defined, and waits until it is ready. */
export async function openDurableConnection(options: DurableConnectionOptions): Promise<Redis & DurableScripts> {
  // Same base settings as the pub/sub connections (see IoredisBus): one "connectTimeout" knob, and a
  // short disconnectTimeout so close() does not hold the process open.
  const settings: RedisOptions = {
    lazyConnect: true,
    connectTimeout: options.connectTimeout,
    disconnectTimeout: 100,
    connectionName: options.connectionName,
    enableOfflineQueue: options.offlineQueue,
    autoResendUnfulfilledCommands: options.offlineQueue,
    // Consumers: a blocked XREAD or a queued command waits for the reconnect (close() bounds it).
    // Publishers: 0 fails the commands in flight as soon as the connection drops. Without it,
    // ioredis 6 with autoResendUnfulfilledCommands off drops them at the reconnect without
    // settling their promises, and a publish cut off by a Redis restart would never end.
    maxRetriesPerRequest: options.offlineQueue ? null : 0,
    commandTimeout: options.commandTimeout,
  };
  const { redis } = options;
  const connection = withDurableScripts(typeof redis === 'string' ? new Redis(redis, settings) : new Redis({ ...redis, ...settings }));
  // ioredis reports every failed reconnect attempt as an 'error'; the users of this connection see
  // the failures of their own commands instead.
  connection.on('error', () => undefined);
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      connection.connect(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new ConnectionLostError(`could not connect to ${describeRedis(redis)} within connectTimeout (${options.connectTimeout} ms); start Redis (or fix the address) first, or raise "connectTimeout"`)),
          options.connectTimeout,
        );
      }),
    ]);
  } catch (error) {
    connection.disconnect();
    throw error instanceof ConnectionLostError ? error : new ConnectionLostError('connecting failed', { cause: error });
  } finally {
    clearTimeout(timer);
  }
  return connection;
}

/** Closes a connection politely if it is up, at once otherwise. */
export async function closeDurableConnection(connection: Redis | undefined): Promise<void> {
  if (connection === undefined) return;
  try {
    if (connection.status === 'ready') await connection.quit();
    else connection.disconnect();
  } catch {
    connection.disconnect();
  }
}
