import { ClusterBus } from '../src/core/bus/cluster-bus.js';
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
