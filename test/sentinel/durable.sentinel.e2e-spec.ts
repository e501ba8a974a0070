// Durable messaging (Redis Streams) through Sentinel: entries go to the master the sentinels name,
// and a SENTINEL FAILOVER loses no accepted entry and leaves no durable connection behind.
import { Redis } from 'ioredis';
import { BufferClient, DurableConsumer, resolveBufferOptions, resolveDurableHandlerOptions } from 'nestjs-redis-buffer';
import { MemoryLogger, waitFor } from '../support/durable.js';
import { sleep } from '../support/raw-redis.js';
import { MASTER_NAME, startSentinelGroup, type TestSentinelGroup } from '../support/redis-sentinel.js';

const FAST = { claimIdle: 1000, claimInterval: 200, retryDelay: 20, maxRetryDelay: 80 } as const;
const namespace = 'sdurable';

async function clientNames(port: number): Promise<string[]> {
  const redis = new Redis({ port, host: '127.0.0.1', retryStrategy: () => null, maxRetriesPerRequest: 0 });
  try {
    const list = (await redis.client('LIST')) as string;
    return list.split('\n').map((line) => /name=(\S*)/.exec(line)?.[1] ?? '').filter(Boolean);
  } finally {
    redis.disconnect();
  }
}

describe('durable messaging through Sentinel', () => {
  let group: TestSentinelGroup;
  let client: BufferClient;
  let consumer: DurableConsumer;

  beforeAll(async () => {
    group = await startSentinelGroup({ downAfterMs: 1000 });
    client = new BufferClient({ ...group.connection, namespace, durable: FAST, timeout: 2000 });
    const options = resolveBufferOptions({ ...group.connection, namespace, instanceId: 'c1', shutdownTimeout: 2000, durable: FAST });
    consumer = new DurableConsumer(options, [{ pattern: 'orders', run: async (delivery) => void handled.add((delivery.data as { n: number }).n), options: resolveDurableHandlerOptions(options.durable, { group: 'g' }) }], new MemoryLogger());
    await consumer.start();
  }, 90_000);

  afterAll(async () => {
    await consumer?.close();
    await client?.close();
    await group?.stop();
  });

  const handled = new Set<number>();
  const accepted: number[] = [];
  async function publish(n: number): Promise<void> {
    try {
      await client.durable.publish('orders', { n }, { key: `k${n % 4}` });
      accepted.push(n);
    } catch {
      // Refused while the master changes: not accepted, not expected.
    }
  }

  it('publishes to and consumes from the master the sentinels name, with nothing on the replica', async () => {
    for (let n = 0; n < 20; n++) await publish(n);
    await waitFor('20 entries handled', () => handled.size === 20, 10_000);
    const master = await group.masterPort();
    const stream = client.durable.keysFor('orders').stream;
    const admin = new Redis({ port: master, host: '127.0.0.1', retryStrategy: () => null, maxRetriesPerRequest: 0 });
    try {
      expect(await admin.xlen(stream)).toBe(20);
    } finally {
      admin.disconnect();
    }
    expect(await clientNames(master)).toEqual(expect.arrayContaining(['rb-durable:c1', 'rb-durable-read:c1', 'rb-durable-turns:c1', `rb-durable-pub:${client.instanceId}`]));
    const replica = group.servers.find((server) => server.port !== master)!.port;
    expect((await clientNames(replica)).filter((name) => name.startsWith('rb'))).toEqual([]);
  }, 30_000);

  it('a SENTINEL FAILOVER under publishing: every accepted entry is handled, and every durable connection follows the new master', async () => {
    const before = await group.masterPort();
    let n = 100;
    const publishing = (async () => {
      for (const until = Date.now() + 4000; Date.now() < until; await sleep(20)) await publish(n++);
    })();
    await sleep(300);
    await group.sentinelCommand('failover', MASTER_NAME);
    await publishing;
    for (const deadline = Date.now() + 20_000; (await group.masterPort()) === before; await sleep(50)) {
      if (Date.now() > deadline) throw new Error('the sentinels did not promote the replica within 20 s');
    }
    const after = await group.masterPort();
    // Publishing goes on after the switch.
    const settled = accepted.length;
    for (let extra = 0; extra < 10; extra++) await publish(n++);
    expect(accepted.length - settled).toBe(10);
    await waitFor('every accepted entry handled', () => accepted.every((value) => handled.has(value)), 20_000);
    await waitFor('every durable connection on the new master', async () => (await clientNames(before)).filter((name) => name.startsWith('rb-durable')).length === 0, 10_000);
    expect(await clientNames(after)).toEqual(expect.arrayContaining(['rb-durable:c1', 'rb-durable-read:c1', 'rb-durable-turns:c1', `rb-durable-pub:${client.instanceId}`]));
    await group.waitStable();
  }, 90_000);
});
