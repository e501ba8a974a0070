// Entries checked against their stream, atomic replay, and dead letters iterated without paging by
// hand: durable core (no Nest) against a real redis-server.
import { BufferClient, DeadLetterNotFoundError, DurablePublisher, resolveBufferOptions, type DurableConsumer, type DurableDelivery } from 'nestjs-redis-buffer';
import type { Redis } from 'ioredis';
import { sleep } from '../support/raw-redis.js';
import { useRedisServer, type TestRedis } from '../support/redis-server.js';
import { MemoryLogger, startConsumer, waitFor } from '../support/durable.js';

const FAST = { claimIdle: 300, claimInterval: 100, retryDelay: 10, maxRetryDelay: 20, maxAttempts: 1 } as const;

describe('durable: entry checks, replay, dead-letter iteration', () => {
  let redis: TestRedis;
  let raw: Redis;
  let client: BufferClient;
  let consumers: DurableConsumer[] = [];
  let namespace: string;
  let counter = 0;

  useRedisServer((server, connection) => {
    redis = server;
    raw = connection;
  });

  beforeEach(() => {
    namespace = `chk${++counter}`;
    client = new BufferClient({ redis: redis.url, namespace, durable: FAST });
  });

  afterEach(async () => {
    await Promise.all(consumers.map((consumer) => consumer.close()));
    consumers = [];
    await client.close();
  });

  async function consume(instanceId: string, group: string, run: (delivery: DurableDelivery) => Promise<void>): Promise<{ consumer: DurableConsumer; logger: MemoryLogger }> {
    const started = await startConsumer(redis.url, namespace, instanceId, [{ pattern: 'work', group, run }], FAST);
    consumers.push(started.consumer);
    return started;
  }

  it('dead-letters, unrun, an entry that names another pattern or a format this version cannot read, in every group, saying why', async () => {
    const ran: string[] = [];
    const a = await consume('c1', 'a', async (delivery) => void ran.push(`a ${delivery.entryId}`));
    const b = await consume('c2', 'b', async (delivery) => void ran.push(`b ${delivery.entryId}`));
    const stream = client.durable.keysFor('work').stream;
    const foreign = (await raw.xadd(stream, '*', 'v', '1', 'pattern', 'some.other', 'data', '{}')) as string;
    const future = (await raw.xadd(stream, '*', 'v', '2', 'pattern', 'work', 'data', '{}')) as string;
    const good = await client.durable.publish('work', { ok: true });
    await waitFor('both groups dead-lettered two entries', async () => (await client.durable.deadLetters('work', 'a')).length === 2 && (await client.durable.deadLetters('work', 'b')).length === 2);
    await waitFor('the good entry ran in both groups', () => ran.length === 2);
    expect(ran.sort()).toEqual([`a ${good}`, `b ${good}`]);
    for (const group of ['a', 'b']) {
      const dead = await client.durable.deadLetters('work', group);
      expect(dead.map((letter) => letter.entryId)).toEqual([foreign, future]);
      expect(dead[0]!.error).toMatchObject({ code: 'BUFFER_BAD_ENTRY', message: expect.stringContaining('it names pattern "some.other"') });
      expect(dead[1]!.error).toMatchObject({ code: 'BUFFER_BAD_ENTRY', message: expect.stringContaining('unsupported entry version "2"') });
    }
    for (const { logger } of [a, b]) {
      expect(logger.lines.some((line) => line.startsWith('warn') && line.includes(foreign) && line.includes('it names pattern "some.other"'))).toBe(true);
      expect(logger.lines.some((line) => line.startsWith('warn') && line.includes(future) && line.includes('unsupported entry version'))).toBe(true);
    }
    expect(a.consumer.stats).toMatchObject({ deadLettered: 2, handled: 1, runs: 1 });
  }, 30_000);

  it('two concurrent replays of one dead letter add one entry; the other is told the dead letter is gone', async () => {
    let fail = true;
    const ran: unknown[] = [];
    await consume('c1', 'a', async (delivery) => {
      ran.push(delivery.data);
      if (fail) throw new Error('not yet');
    });
    await client.durable.publish('work', { n: 1 });
    await waitFor('a dead letter', async () => (await client.durable.deadLetters('work', 'a')).length === 1);
    const [dead] = await client.durable.deadLetters('work', 'a');
    fail = false;
    const other = new BufferClient({ redis: redis.url, namespace, durable: FAST });
    try {
      const outcomes = await Promise.allSettled([client.durable.replayDeadLetter('work', 'a', dead!.id), other.durable.replayDeadLetter('work', 'a', dead!.id)]);
      const fulfilled = outcomes.filter((outcome) => outcome.status === 'fulfilled');
      const rejected = outcomes.filter((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
      expect(fulfilled).toHaveLength(1);
      expect(rejected).toHaveLength(1);
      expect(rejected[0]!.reason).toBeInstanceOf(DeadLetterNotFoundError);
    } finally {
      await other.close();
    }
    await waitFor('the replay ran', () => ran.length === 2);
    await sleep(300);
    expect(ran).toEqual([{ n: 1 }, { n: 1 }]);
    expect(await raw.xlen(client.durable.keysFor('work').stream)).toBe(2);
    expect(await client.durable.deadLetters('work', 'a')).toEqual([]);
  }, 30_000);

  it('reports, at start and at first publish, durable options that differ between consumers and publisher', async () => {
    await consume('c1', 'a', async () => undefined);
    const second = await startConsumer(redis.url, namespace, 'c2', [{ pattern: 'work', group: 'a', run: async () => undefined }], { ...FAST, claimIdle: 5000 });
    consumers.push(second.consumer);
    expect(second.logger.lines.filter((line) => line.startsWith('warn'))).toEqual([
      expect.stringContaining('durable.claimIdle is 5000 here but 300 in Redis (recorded by instance "c1")'),
    ]);
    const logger = new MemoryLogger();
    const publisher = new DurablePublisher(resolveBufferOptions({ redis: redis.url, namespace, durable: { ...FAST, idempotencyWindow: 1000 } }), undefined, logger);
    try {
      await publisher.publish('work', 1);
      await waitFor('the publisher\'s warning', () => logger.lines.length > 0);
      expect(logger.lines).toEqual([expect.stringContaining('durable.idempotencyWindow is 1000 here but 86400000 in Redis (recorded by instance "c2")')]);
    } finally {
      await publisher.close();
    }
  }, 30_000);

  it('iterates every dead letter of a group, page after page', async () => {
    await consume('c1', 'a', async () => {
      throw new Error('always');
    });
    const ids: string[] = [];
    for (let n = 0; n < 7; n++) ids.push(await client.durable.publish('work', { n }));
    await waitFor('7 dead letters', async () => (await client.durable.deadLetters('work', 'a')).length === 7);
    const seen: string[] = [];
    for await (const dead of client.durable.eachDeadLetter('work', 'a', { pageSize: 3 })) seen.push(dead.entryId);
    expect(seen).toEqual(ids);
  }, 30_000);
});
