// Consumer names per process: each process consumes under `<instanceId>@<suffix>`, so two processes
// under one instance id are two owners to Redis (see durable-freeze for the frozen twin); the names
// an instance's earlier processes left are removed once they hold nothing, never while they hold an
// entry. Durable core (no Nest) against a real redis-server.
import { BufferClient, type DurableConsumer, type DurableDelivery } from 'nestjs-redis-buffer';
import type { Redis } from 'ioredis';
import { useRedisServer, type TestRedis } from '../support/redis-server.js';
import { startConsumer, waitFor } from '../support/durable.js';

// Names idle for max(1 s, 2 x claimIdle) are removed.
const FAST = { claimIdle: 300, claimInterval: 100, retryDelay: 10, maxRetryDelay: 20, maxAttempts: 3 } as const;
const NS = 'names';
const STREAM = `${NS}:durable:{work}`;

describe('durable: consumer names per process', () => {
  let redis: TestRedis;
  let raw: Redis;
  let client: BufferClient;
  const consumers: DurableConsumer[] = [];

  useRedisServer((server, connection) => {
    redis = server;
    raw = connection;
  });

  afterEach(async () => {
    await Promise.all(consumers.splice(0).map((consumer) => consumer.close()));
    await client?.close();
    // Each test on an empty server.
    await raw.flushall();
  });

  /** The group's consumers: name → pending entries. */
  async function consumersOf(group: string): Promise<Record<string, number>> {
    const list = (await raw.call('XINFO', 'CONSUMERS', STREAM, group)) as Array<Array<string | number>>;
    return Object.fromEntries(list.map((fields) => [String(fields[fields.indexOf('name') + 1]), Number(fields[fields.indexOf('pending') + 1])]));
  }

  async function consume(instanceId: string, ran: unknown[]): Promise<DurableConsumer> {
    const { consumer } = await startConsumer(redis.url, NS, instanceId, [{ pattern: 'work', group: 'g', run: async (delivery: DurableDelivery) => void ran.push([delivery.consumer, delivery.data]) }], FAST);
    consumers.push(consumer);
    return consumer;
  }

  it("each process has a name of its own; a restart's earlier names go once they hold nothing, never while they hold an entry", async () => {
    client = new BufferClient({ redis: redis.url, namespace: NS, durable: FAST });
    const ran: unknown[] = [];
    const first = await consume('p1', ran);
    expect(first.consumerName).toMatch(/^p1@[0-9a-f]{8}$/);
    await client.durable.publish('work', { n: 1 });
    await waitFor('the first entry handled', () => ran.length === 1);
    // The handler sees the instance id, not the name.
    expect(ran).toEqual([['p1', { n: 1 }]]);
    await first.close();
    consumers.splice(0);
    // What an earlier process left: the bare instance id (the name versions before this one used),
    // holding nothing, and a name that still holds an entry it read and never acknowledged (a crash).
    await raw.call('XGROUP', 'CREATECONSUMER', STREAM, 'g', 'p1');
    await client.durable.publish('work', { n: 2 });
    await raw.call('XREADGROUP', 'GROUP', 'g', 'p1@deadbeef', 'COUNT', 1, 'STREAMS', STREAM, '>');
    // Another instance's names are never touched.
    await raw.call('XGROUP', 'CREATECONSUMER', STREAM, 'g', 'p2@0badf00d');
    expect(await consumersOf('g')).toEqual({ [first.consumerName]: 0, p1: 0, 'p1@deadbeef': 1, 'p2@0badf00d': 0 });

    const second = await consume('p1', ran);
    expect(second.consumerName).not.toBe(first.consumerName);
    // The crashed name's entry is claimed after claimIdle and runs here; then that name holds
    // nothing, and every earlier name of p1 goes once idle for a second.
    await waitFor('the crashed name\'s entry handled', () => ran.length === 2, 10_000);
    expect(ran[1]).toEqual(['p1', { n: 2 }]);
    await waitFor('the earlier names of p1 removed', async () => Object.keys(await consumersOf('g')).sort().join() === [second.consumerName, 'p2@0badf00d'].sort().join(), 10_000);
    expect(second.stats.namesPruned).toBe(3);
    expect(second.stats.claimed).toBe(1);
  }, 30_000);

  it('a name that holds an entry is kept however long it is idle: what it holds is claimed first', async () => {
    client = new BufferClient({ redis: redis.url, namespace: NS, durable: FAST });
    await client.durable.publish('work', { n: 1 });
    await client.durable.publish('work', { n: 2 });
    await raw.call('XGROUP', 'CREATE', STREAM, 'h', '0');
    // A process that read one entry and crashed.
    await raw.call('XREADGROUP', 'GROUP', 'h', 'p3@deadbeef', 'COUNT', 1, 'STREAMS', STREAM, '>');
    // The new process has room for one entry, and its handler holds the other: it cannot claim
    // the crashed name's entry, which stays pending there while the name grows idle.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const ran: unknown[] = [];
    const { consumer } = await startConsumer(
      redis.url,
      NS,
      'p3',
      [
        {
          pattern: 'work',
          group: 'h',
          run: async (delivery: DurableDelivery) => {
            ran.push(delivery.data);
            await held;
          },
        },
      ],
      { ...FAST, maxInFlight: 1 },
    );
    consumers.push(consumer);
    await waitFor('the second entry running', () => ran.length === 1);
    // Past the idle bound (1 s) twice over, through several prunes: the name is kept, with its entry.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect(await consumer.pruneNames()).toBe(0);
    expect(await consumersOf('h')).toMatchObject({ 'p3@deadbeef': 1 });
    expect(consumer.stats.namesPruned).toBe(0);
    // Room again: the entry is claimed and runs, and then the name goes.
    release();
    await waitFor('the crashed name\'s entry handled', () => ran.length === 2, 10_000);
    await waitFor('the crashed name removed', async () => !('p3@deadbeef' in (await consumersOf('h'))), 10_000);
    expect(ran).toEqual([{ n: 2 }, { n: 1 }]);
  }, 30_000);
});
