// Durable messaging, core layer (no Nest), against a real redis-server: delivery, fan-out,
// competition, retries, dead letters, idempotency, ordering, retention, backpressure, shutdown.
import { BufferClient, DeadLetterNotFoundError, type DurableConsumer, type DurableDelivery } from 'nestjs-redis-buffer';
import type { Redis } from 'ioredis';
import { rawRedis, sleep } from '../support/raw-redis.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { startConsumer, waitFor, type ConsumerSpec } from '../support/durable.js';

const FAST = { claimIdle: 300, claimInterval: 100, retryDelay: 20, maxRetryDelay: 80 } as const;

describe('durable messaging (core)', () => {
  let redis: TestRedis;
  let raw: Redis;
  let client: BufferClient;
  let namespace: string;
  let consumers: DurableConsumer[];
  let nsCounter = 0;

  beforeAll(async () => {
    redis = await startRedis();
    raw = rawRedis(redis.url);
  });

  afterAll(async () => {
    raw?.disconnect();
    await redis?.stop();
  });

  beforeEach(() => {
    namespace = `d${++nsCounter}`;
    consumers = [];
    client = new BufferClient({ redis: redis.url, namespace, durable: FAST });
  });

  afterEach(async () => {
    await Promise.all(consumers.map((consumer) => consumer.close()));
    await client.close();
  });

  async function consume(instanceId: string, specs: ConsumerSpec[], durable: Record<string, unknown> = {}, extra: { shutdownTimeout?: number } = {}): Promise<DurableConsumer> {
    const { consumer } = await startConsumer(redis.url, namespace, instanceId, specs, { ...FAST, ...durable }, extra);
    consumers.push(consumer);
    return consumer;
  }

  describe('delivery', () => {
    it('runs every entry once and acknowledges it after the handler succeeded, returning the entry id at publish', async () => {
      const seen: DurableDelivery[] = [];
      await consume('c1', [{ pattern: 'order.placed', group: 'billing', run: async (d) => void seen.push(d) }]);
      const ids: string[] = [];
      for (let n = 0; n < 20; n++) ids.push(await client.durable.publish('order.placed', { n }, { headers: { 'x-n': String(n) } }));
      await waitFor('20 deliveries', () => seen.length === 20);
      expect(seen.map((d) => d.entryId)).toEqual(ids);
      expect(seen.map((d) => (d.data as { n: number }).n)).toEqual([...Array(20).keys()]);
      expect(seen[3]).toMatchObject({ pattern: 'order.placed', group: 'billing', attempt: 1, headers: { 'x-n': '3' }, consumer: 'c1', from: client.instanceId });
      await waitFor('all acknowledged', async () => ((await raw.xpending(client.durable.keysFor('order.placed').stream, 'billing')) as [number])[0] === 0);
    });

    it('keeps entries published before any consumer ran, for a group that starts at the beginning', async () => {
      for (let n = 0; n < 5; n++) await client.durable.publish('early', n);
      const seen: unknown[] = [];
      await consume('c1', [{ pattern: 'early', group: 'late', run: async (d) => void seen.push(d.data) }]);
      await waitFor('5 deliveries', () => seen.length === 5);
      expect(seen).toEqual([0, 1, 2, 3, 4]);
    });

    it('gives every group every entry, and each entry to one consumer of a group', async () => {
      const handled: Record<string, string[]> = { a: [], b: [] };
      const byConsumer: Record<string, number> = {};
      const spec = (group: 'a' | 'b', name: string): ConsumerSpec => ({
        pattern: 'fan',
        group,
        run: async (d) => {
          handled[group]!.push(d.entryId);
          byConsumer[name] = (byConsumer[name] ?? 0) + 1;
          await sleep(2);
        },
      });
      await consume('a1', [spec('a', 'a1')]);
      await consume('a2', [spec('a', 'a2')]);
      await consume('a3', [spec('a', 'a3')]);
      await consume('b1', [spec('b', 'b1')]);
      const published = await Promise.all([...Array(200).keys()].map((n) => client.durable.publish('fan', n)));
      await waitFor('200 entries in each group', () => handled.a!.length >= 200 && handled.b!.length >= 200);
      await sleep(200);
      expect(new Set(handled.a).size).toBe(200);
      expect(handled.a).toHaveLength(200);
      expect(handled.b).toHaveLength(200);
      expect(new Set(handled.b)).toEqual(new Set(published));
      // Competing consumers: the group's work was shared.
      expect(byConsumer.a1! + byConsumer.a2! + byConsumer.a3!).toBe(200);
      expect([byConsumer.a1, byConsumer.a2, byConsumer.a3].filter((count) => (count ?? 0) > 0).length).toBeGreaterThan(1);
      expect(byConsumer.b1).toBe(200);
    });
  });

  describe('retries and dead letters', () => {
    it('retries a failing handler with growing delays, then succeeds', async () => {
      const attempts: Array<{ attempt: number; at: number }> = [];
      await consume('c1', [
        {
          pattern: 'flaky',
          group: 'g',
          retryDelay: 50,
          maxRetryDelay: 1000,
          run: async (d) => {
            attempts.push({ attempt: d.attempt, at: Date.now() });
            if (d.attempt < 4) throw new Error(`fail ${d.attempt}`);
          },
        },
      ]);
      await client.durable.publish('flaky', 'x');
      await waitFor('4 attempts', () => attempts.length === 4);
      expect(attempts.map((a) => a.attempt)).toEqual([1, 2, 3, 4]);
      const gaps = attempts.slice(1).map((a, index) => a.at - attempts[index]!.at);
      // 50, 100, 200 ms with up to 20 % jitter below.
      expect(gaps[0]).toBeGreaterThanOrEqual(38);
      expect(gaps[1]).toBeGreaterThanOrEqual(78);
      expect(gaps[2]).toBeGreaterThanOrEqual(158);
      expect(await client.durable.deadLetters('flaky', 'g')).toEqual([]);
    });

    it('moves an entry that failed maxAttempts times to the dead-letter stream with its last error, and replays it for its group only', async () => {
      let failing = true;
      const runs: Record<string, number> = { a: 0, b: 0 };
      const spec = (group: 'a' | 'b'): ConsumerSpec => ({
        pattern: 'poison',
        group,
        maxAttempts: 3,
        run: async (d) => {
          runs[group]!++;
          if (group === 'a' && failing) throw Object.assign(new Error(`bad payload ${String(d.data)}`), { code: 'E_BAD' });
        },
      });
      await consume('c1', [spec('a'), spec('b')]);
      const entryId = await client.durable.publish('poison', 42, { key: 'k1', idempotencyKey: 'p-1' });
      await waitFor('a dead letter', async () => (await client.durable.deadLetters('poison', 'a')).length === 1);
      const [dead] = await client.durable.deadLetters('poison', 'a');
      expect(dead).toMatchObject({ entryId, group: 'a', pattern: 'poison', attempts: 3, consumer: 'c1', error: { name: 'Error', message: 'bad payload 42', code: 'E_BAD' } });
      expect(dead!.entry).toMatchObject({ data: 42, key: 'k1', idempotencyKey: 'p-1' });
      expect(runs).toEqual({ a: 3, b: 1 });
      expect(consumers[0]!.stats).toMatchObject({ deadLettered: 1, failed: 3, retried: 2 });

      failing = false;
      const replayId = await client.durable.replayDeadLetter('poison', 'a', dead!.id);
      expect(replayId).not.toBe(entryId);
      await waitFor('the replay to run in group a', () => runs.a === 4);
      await sleep(300);
      // Group b had handled it already: the replay is acknowledged there without running.
      expect(runs).toEqual({ a: 4, b: 1 });
      expect(consumers[0]!.stats.skipped).toBe(1);
      expect(await client.durable.deadLetters('poison', 'a')).toEqual([]);
      await expect(client.durable.replayDeadLetter('poison', 'a', dead!.id)).rejects.toBeInstanceOf(DeadLetterNotFoundError);
    });

    it('dead-letters an entry it cannot read without running it (BUFFER_BAD_ENTRY)', async () => {
      let runs = 0;
      await consume('c1', [{ pattern: 'raw', group: 'g', run: async () => void runs++ }]);
      const stream = client.durable.keysFor('raw').stream;
      await raw.xadd(stream, '*', 'v', '1', 'pattern', 'raw', 'data', '{not json');
      await raw.xadd(stream, '*', 'v', '9', 'pattern', 'raw');
      await raw.xadd(stream, '*', 'v', '1', 'pattern', 'raw', 'data', '"by hand"');
      await waitFor('2 dead letters', async () => (await client.durable.deadLetters('raw', 'g')).length === 2);
      const dead = await client.durable.deadLetters('raw', 'g');
      expect(dead.map((d) => (d.error as { code: string }).code)).toEqual(['BUFFER_BAD_ENTRY', 'BUFFER_BAD_ENTRY']);
      expect((dead[0]!.error as { message: string }).message).toContain('"data" is not JSON');
      await waitFor('the good entry', () => runs === 1);
    });
  });
});
