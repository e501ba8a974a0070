import { Cluster, Redis } from 'ioredis';
import type { BufferOptions } from 'nestjs-redis-buffer';
import { startCluster, type ClusterSpec, type TestCluster } from './redis-cluster.js';
import { startRedis, type TestRedis } from './redis-server.js';

/**
 * A Redis deployment for a test suite, with what a test does by hand on it: publish, subscribe and
 * list channels the way the library does there (PUBLISH/SUBSCRIBE on one server, SPUBLISH/SSUBSCRIBE
 * on every master of a cluster). Lets one suite run unchanged on both.
 */
export interface RedisTarget {
  readonly name: string;
  /** What `BufferClient` and `RedisBufferTransport` take to reach it. */
  readonly connection: Pick<BufferOptions, 'redis' | 'cluster'>;
  /** Publishes a raw message; resolves with Redis's receiver count. */
  publish(channel: string, message: string): Promise<number>;
  /** Calls `onMessage` with every message on `channel`. */
  subscribe(channel: string, onMessage: (message: string) => void): Promise<{ close(): Promise<void> }>;
  /** Subscribes to `channel` and collects every message. */
  collect(channel: string): Promise<{ messages: string[]; close(): Promise<void> }>;
  /** Channels with subscribers that match the glob `pattern`, over the whole deployment. */
  channels(pattern: string): Promise<string[]>;
  /** Pattern subscriptions over the whole deployment. */
  numpat(): Promise<number>;
  close(): Promise<void>;
  stop(): Promise<void>;
}

export async function singleServerTarget(): Promise<RedisTarget & { redis: TestRedis }> {
  const redis = await startRedis();
  const admin = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  const subscribe = async (channel: string, onMessage: (message: string) => void): Promise<{ close(): Promise<void> }> => {
    const subscriber = new Redis(redis.url);
    subscriber.on('message', (received: string, message: string) => {
      if (received === channel) onMessage(message);
    });
    await subscriber.subscribe(channel);
    return { close: async () => void (await subscriber.quit()) };
  };
  return {
    name: 'one Redis server',
    redis,
    connection: { redis: redis.url },
    publish: (channel, message) => admin.publish(channel, message),
    subscribe,
    async collect(channel) {
      const messages: string[] = [];
      const { close } = await subscribe(channel, (message) => messages.push(message));
      return { messages, close };
    },
    channels: async (pattern) => (await admin.call('PUBSUB', 'CHANNELS', pattern)) as string[],
    numpat: async () => Number(await admin.call('PUBSUB', 'NUMPAT')),
    close: async () => void (await admin.quit()),
    stop: () => redis.stop(),
  };
}

export async function clusterTarget(spec: ClusterSpec = {}): Promise<RedisTarget & { cluster: TestCluster }> {
  const cluster = await startCluster(spec);
  const nodes = cluster.startupNodes.map((node) => ({ ...node }));
  const admin = new Cluster(nodes, { redisOptions: { maxRetriesPerRequest: 1 } });
  const onMasters = async <T>(fn: (redis: Redis) => Promise<T>): Promise<T[]> => {
    const ports = await cluster.masters();
    return Promise.all(
      ports.map(async (port) => {
        const redis = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 });
        try {
          return await fn(redis);
        } finally {
          redis.disconnect();
        }
      }),
    );
  };
  const subscribe = async (channel: string, onMessage: (message: string) => void): Promise<{ close(): Promise<void> }> => {
    const subscriber = new Cluster(nodes, { shardedSubscribers: true });
    subscriber.on('smessage', (received: string, message: string) => {
      if (received === channel) onMessage(message);
    });
    await subscriber.ssubscribe(channel);
    return { close: async () => void subscriber.disconnect() };
  };
  return {
    name: `Redis Cluster (${(spec.masters ?? 3)} masters, sharded pub/sub)`,
    cluster,
    connection: { cluster: { nodes } },
    publish: async (channel, message) => Number(await admin.spublish(channel, message)),
    subscribe,
    async collect(channel) {
      const messages: string[] = [];
      const { close } = await subscribe(channel, (message) => messages.push(message));
      return { messages, close };
    },
    channels: async (pattern) => (await onMasters((redis) => redis.call('PUBSUB', 'SHARDCHANNELS', pattern) as Promise<string[]>)).flat(),
    numpat: async () => (await onMasters(async (redis) => Number(await redis.call('PUBSUB', 'NUMPAT')))).reduce((a, b) => a + b, 0),
    close: async () => void admin.disconnect(),
    stop: () => cluster.stop(),
  };
}
