import { Cluster } from 'ioredis';
import { withTimeout, within } from '../src/core/async/bounded-wait.js';
import { BusStatusMachine } from '../src/core/bus/bus-status.js';
import { ClusterBus } from '../src/core/bus/cluster-bus.js';
import { ConnectionFactory } from '../src/core/bus/connection-factory.js';
import { createBus } from '../src/core/bus/create-bus.js';
import { resolveBufferOptions } from '../src/core/options.js';
import { IoredisBus } from '../src/core/bus/redis-bus.js';

describe('createBus', () => {
  it('builds a ClusterBus for "cluster", and an IoredisBus for one server or Sentinel, without connecting', async () => {
    const cluster = createBus(resolveBufferOptions({ cluster: { nodes: [{ host: '127.0.0.1', port: 1 }] } }), 'test');
    const server = createBus(resolveBufferOptions({ redis: 'redis://127.0.0.1:1' }), 'test');
    const sentinel = createBus(resolveBufferOptions({ redis: { sentinels: [{ host: '127.0.0.1', port: 1 }], name: 'mymaster' } }), 'test');
    expect(cluster).toBeInstanceOf(ClusterBus);
    expect(server).toBeInstanceOf(IoredisBus);
    expect(sentinel).toBeInstanceOf(IoredisBus);
    for (const bus of [cluster, server, sentinel]) {
      expect(bus.status).toBe('disconnected');
      await bus.close();
    }
  });

  it('a ClusterBus refuses to publish before it connected, with a typed error and at once', async () => {
    const bus = createBus(resolveBufferOptions({ cluster: { nodes: [{ host: '127.0.0.1', port: 1 }] } }), 'test');
    await expect(bus.publish('rb:req:x', '{}')).rejects.toMatchObject({ code: 'BUFFER_CONNECTION_LOST' });
    await bus.close();
  });
});

describe('ConnectionFactory: every path takes the application settings the same way', () => {
  const secure = { username: 'app', password: 'secret', tls: { servername: 'redis.example' }, protocol: 2 as const, db: 0 };

  it('one server, from options or a URL: the application settings, then the library base, then the role', () => {
    const factory = new ConnectionFactory({ redis: { host: '10.0.0.1', port: 6380, ...secure }, cluster: undefined, connectTimeout: 1234 });
    const connection = factory.server('rb:x:pub', { enableOfflineQueue: false });
    expect(connection.options).toMatchObject({ host: '10.0.0.1', port: 6380, ...secure, connectTimeout: 1234, connectionName: 'rb:x:pub', lazyConnect: true, disconnectTimeout: 100, enableOfflineQueue: false });
    connection.disconnect();
    const fromUrl = new ConnectionFactory({ redis: 'rediss://app:secret@10.0.0.2:6390/2', cluster: undefined, connectTimeout: 999 }).server('rb:y');
    expect(fromUrl.options).toMatchObject({ host: '10.0.0.2', port: 6390, username: 'app', password: 'secret', db: 2, connectTimeout: 999, connectionName: 'rb:y' });
    expect(fromUrl.options.tls).toBeDefined();
    fromUrl.disconnect();
  });

  it('Sentinel: the failover detector is on unless the application set it', () => {
    const sentinels = [{ host: '127.0.0.1', port: 1 }];
    const on = new ConnectionFactory({ redis: { sentinels, name: 'mymaster' }, cluster: undefined, connectTimeout: 100 }).server('a');
    const off = new ConnectionFactory({ redis: { sentinels, name: 'mymaster', failoverDetector: false }, cluster: undefined, connectTimeout: 100 }).server('b');
    expect(on.options.failoverDetector).toBe(true);
    expect(off.options.failoverDetector).toBe(false);
    on.disconnect();
    off.disconnect();
  });

  it('a cluster: the Cluster, its node connections and a connection to one node carry the application redisOptions and the same base', () => {
    const factory = new ConnectionFactory({ redis: 'redis://unused', cluster: { nodes: [{ host: '127.0.0.1', port: 1 }], options: { scaleReads: 'master', redisOptions: secure } }, connectTimeout: 4321 });
    const cluster = factory.any('rb-durable:c1', { enableOfflineQueue: false, maxRetriesPerRequest: 0 });
    expect(cluster).toBeInstanceOf(Cluster);
    expect((cluster as Cluster).options).toMatchObject({ scaleReads: 'master', enableOfflineQueue: false, lazyConnect: true });
    expect((cluster as Cluster).options.redisOptions).toMatchObject({ ...secure, connectTimeout: 4321, connectionName: 'rb-durable:c1', disconnectTimeout: 100, maxRetriesPerRequest: 0 });
    cluster.disconnect();
    const node = factory.node('::1:7001', 'rb:x:sub', { autoResubscribe: false });
    expect(node.options).toMatchObject({ host: '::1', port: 7001, ...secure, connectTimeout: 4321, connectionName: 'rb:x:sub', autoResubscribe: false });
    node.disconnect();
    expect(factory.describe()).toBe('the Redis Cluster at 127.0.0.1:1');
  });
});

describe('bounded waits', () => {
  it('withTimeout settles as the work does, or rejects with the timeout error, and clears its timer', async () => {
    await expect(withTimeout(Promise.resolve(7), 1000, () => new Error('late'))).resolves.toBe(7);
    await expect(withTimeout(new Promise(() => undefined), 10, () => new Error('late'))).rejects.toThrow('late');
    await expect(withTimeout(Promise.reject(new Error('boom')), 1000, () => new Error('late'))).rejects.toThrow('boom');
  });

  it('within never rejects and never waits past its bound', async () => {
    const started = Date.now();
    await within(new Promise(() => undefined), 20);
    expect(Date.now() - started).toBeLessThan(500);
    await expect(within(Promise.reject(new Error('ignored')), 1000)).resolves.toBeUndefined();
  });
});

describe('BusStatusMachine', () => {
  it('connecting until first held, reconnecting after, disconnected when a connection ended, and nothing moves it once closed', () => {
    const seen: string[] = [];
    const state = new BusStatusMachine((status) => seen.push(status));
    state.connecting();
    state.refresh(false, false);
    state.refresh(true, false);
    state.refresh(true, false);
    state.refresh(false, false);
    state.refresh(false, true);
    state.close();
    state.refresh(true, false);
    state.abandoned();
    expect(seen).toEqual(['connecting', 'connected', 'reconnecting', 'disconnected', 'closed']);
    expect(state.everConnected).toBe(true);
  });
});
