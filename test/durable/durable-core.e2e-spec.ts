// Durable messaging, core layer (no Nest), against a real redis-server: delivery, fan-out,
// competition, retries, dead letters, idempotency, ordering, retention, backpressure, shutdown.
import { BufferClient, DeadLetterNotFoundError, type DurableConsumer, type DurableDelivery } from 'nestjs-redis-buffer';
import type { Redis } from 'ioredis';
import { sleep } from '../support/raw-redis.js';
import { DURABLE_AOF, startRedis, useRedisServer, type TestRedis } from '../support/redis-server.js';
import { startConsumer, waitFor, type ConsumerSpec } from '../support/durable.js';
import { LatencyProxy } from '../support/latency-proxy.js';
// The trim's fallback path is internal: reached through the library's own modules.
import { openDurableConnection } from '../../libs/redis-buffer/src/core/durable/durable-connection.js';
import { trimStream } from '../../libs/redis-buffer/src/core/durable/retention.js';
import { assumeStreamFeatures, streamFeatures } from '../../libs/redis-buffer/src/core/durable/server-features.js';

const FAST = { claimIdle: 300, claimInterval: 100, retryDelay: 20, maxRetryDelay: 80 } as const;
// Jest's default per-test timeout (5 s) is too short for these on a loaded machine.
const CASE_TIMEOUT = 30_000;

describe('durable messaging (core)', () => {
  let redis: TestRedis;
  let raw: Redis;
  let client: BufferClient;
  let namespace: string;
  let consumers: DurableConsumer[];
  let nsCounter = 0;

  useRedisServer((server, connection) => {
    redis = server;
    raw = connection;
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
    }, CASE_TIMEOUT);

    it('keeps entries published before any consumer ran, for a group that starts at the beginning', async () => {
      for (let n = 0; n < 5; n++) await client.durable.publish('early', n);
      const seen: unknown[] = [];
      await consume('c1', [{ pattern: 'early', group: 'late', run: async (d) => void seen.push(d.data) }]);
      await waitFor('5 deliveries', () => seen.length === 5);
      expect(seen).toEqual([0, 1, 2, 3, 4]);
    }, CASE_TIMEOUT);

    it('starts a new group at the end of the stream with newGroupStartsAt "end"', async () => {
      await client.durable.publish('late-start', 'before');
      const seen: unknown[] = [];
      await consume('c1', [{ pattern: 'late-start', group: 'fresh', run: async (d) => void seen.push(d.data) }], { newGroupStartsAt: 'end' });
      await client.durable.publish('late-start', 'after');
      await waitFor('the entry published after the group', () => seen.length === 1);
      await sleep(100);
      expect(seen).toEqual(['after']);
    }, CASE_TIMEOUT);

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
    }, CASE_TIMEOUT);
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
    }, CASE_TIMEOUT);

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
    }, CASE_TIMEOUT);

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
    }, CASE_TIMEOUT);
  });

  describe('claiming', () => {
    it('claims an entry whose consumer vanished after claimIdle; the run it started counts as an attempt', async () => {
      const stream = client.durable.keysFor('orphan').stream;
      await raw.xgroup('CREATE', stream, 'g', '0', 'MKSTREAM');
      const id = await client.durable.publish('orphan', 'x');
      // A consumer that read the entry, started it (counted as docs/protocol.md says), and was never heard of again.
      await raw.xreadgroup('GROUP', 'g', 'ghost', 'COUNT', 10, 'STREAMS', stream, '>');
      await raw.hset(client.durable.keysFor('orphan').attempts('g'), id, '1');
      const readAt = Date.now();
      const seen: DurableDelivery[] = [];
      await consume('c1', [{ pattern: 'orphan', group: 'g', run: async (d) => void seen.push(d) }]);
      await waitFor('the claimed entry', () => seen.length === 1);
      expect(Date.now() - readAt).toBeGreaterThanOrEqual(FAST.claimIdle);
      expect(seen[0]).toMatchObject({ entryId: id, attempt: 2 });
      expect(consumers[0]!.stats.claimed).toBe(1);
    }, CASE_TIMEOUT);

    it('does not run twice a handler that takes longer than claimIdle: its instance renews the entry', async () => {
      const runs: string[] = [];
      const spec = (name: string): ConsumerSpec => ({
        pattern: 'long',
        group: 'g',
        run: async () => {
          runs.push(name);
          await sleep(4 * FAST.claimIdle);
        },
      });
      await consume('c1', [spec('c1')]);
      await consume('c2', [spec('c2')]);
      await client.durable.publish('long', 1);
      await waitFor('one run', () => runs.length === 1);
      await sleep(5 * FAST.claimIdle);
      expect(runs).toHaveLength(1);
      expect(consumers.reduce((sum, consumer) => sum + consumer.stats.handled, 0)).toBe(1);
    }, CASE_TIMEOUT);
  });

  describe('backpressure and shutdown', () => {
    it('holds at most maxInFlight entries at once; the rest wait in Redis', async () => {
      let running = 0;
      let maxRunning = 0;
      let maxHeld = 0;
      let done = 0;
      const consumer = await consume(
        'c1',
        [
          {
            pattern: 'bp',
            group: 'g',
            run: async () => {
              running++;
              maxRunning = Math.max(maxRunning, running);
              maxHeld = Math.max(maxHeld, consumer.holding);
              await sleep(15);
              running--;
              done++;
            },
          },
        ],
        { maxInFlight: 4 },
      );
      await Promise.all([...Array(60).keys()].map((n) => client.durable.publish('bp', n)));
      await waitFor('60 handled', () => done === 60);
      expect(maxRunning).toBe(4);
      expect(maxHeld).toBeLessThanOrEqual(4);
    }, CASE_TIMEOUT);

    it('on close, finishes running handlers and releases entries waiting for a retry, which another instance then takes at once', async () => {
      const handledBy: Record<string, string[]> = { c1: [], c2: [] };
      const durable = { claimIdle: 3000, claimInterval: 100 };
      const c1 = await consume(
        'c1',
        [
          {
            pattern: 'drain',
            group: 'g',
            retryDelay: 10_000,
            run: async (d) => {
              if ((d.data as number) % 2 === 1) throw new Error('odd entries fail on c1');
              await sleep(150);
              handledBy.c1!.push(d.entryId);
            },
          },
        ],
        durable,
      );
      const ids = await Promise.all([...Array(6).keys()].map((n) => client.durable.publish('drain', n)));
      await waitFor('3 failures on c1', () => c1.stats.failed === 3);
      const closing = c1.close();
      await consume('c2', [{ pattern: 'drain', group: 'g', run: async (d) => void handledBy.c2!.push(d.entryId) }], durable);
      await closing;
      const closedAt = Date.now();
      expect(handledBy.c1).toHaveLength(3);
      await waitFor('c2 to take the 3 released entries', () => handledBy.c2!.length === 3, 2500);
      // Released entries are claimable at once, not after claimIdle (3000 ms).
      expect(Date.now() - closedAt).toBeLessThan(1500);
      expect(new Set([...handledBy.c1!, ...handledBy.c2!])).toEqual(new Set(ids));
      expect(c1.stats.released).toBe(3);
    }, CASE_TIMEOUT);

    it('keeps renewing a handler still running during close, so no other instance starts its entry or key meanwhile', async () => {
      // claimIdle (400 ms) is shorter than the handler (1000 ms) and than shutdownTimeout (3000 ms):
      // if close() stopped renewing, the entry would be claimed and run beside the handler.
      const runs: Array<{ by: string; n: number; start: number; end?: number }> = [];
      const spec = (by: string): ConsumerSpec => ({
        pattern: 'renewed',
        group: 'g',
        run: async (d) => {
          const run: { by: string; n: number; start: number; end?: number } = { by, n: d.data as number, start: Date.now() };
          runs.push(run);
          if (run.n === 0) await sleep(1000);
          run.end = Date.now();
        },
      });
      const durable = { claimIdle: 400, claimInterval: 50 };
      const c1 = await consume('c1', [spec('c1')], durable, { shutdownTimeout: 3000 });
      await client.durable.publish('renewed', 0, { key: 'k' });
      await waitFor('c1 running entry 0', () => runs.length === 1);
      await client.durable.publish('renewed', 1, { key: 'k' });
      await consume('c2', [spec('c2')], durable);
      await c1.close();
      await waitFor('entry 1 handled', () => runs.some((run) => run.n === 1 && run.end !== undefined));
      await sleep(600);
      expect(runs.filter((run) => run.n === 0).map((run) => run.by)).toEqual(['c1']);
      const first = runs.find((run) => run.n === 0)!;
      const second = runs.find((run) => run.n === 1)!;
      expect(second.start).toBeGreaterThanOrEqual(first.end!);
    }, CASE_TIMEOUT);

    it('does not hand back an entry whose handler outlives shutdownTimeout: it is told to stop, and claimed after claimIdle', async () => {
      const runs: Array<{ by: string; n: number; start: number; end?: number; aborted?: boolean }> = [];
      const spec = (by: string): ConsumerSpec => ({
        pattern: 'outlived',
        group: 'g',
        run: async (d) => {
          const run: { by: string; n: number; start: number; end?: number; aborted?: boolean } = { by, n: d.data as number, start: Date.now() };
          runs.push(run);
          // c1's first run ignores the signal, as a handler stuck in a call would; it ends later.
          if (by === 'c1') await sleep(1200);
          run.aborted = d.signal.aborted;
          run.end = Date.now();
        },
      });
      const durable = { claimIdle: 1500, claimInterval: 50 };
      const c1 = await consume('c1', [spec('c1')], durable, { shutdownTimeout: 300 });
      await client.durable.publish('outlived', 0, { key: 'k' });
      await waitFor('c1 running entry 0', () => runs.length === 1);
      await client.durable.publish('outlived', 1, { key: 'k' });
      await consume('c2', [spec('c2')], durable);
      await c1.close();
      await waitFor('entries 0 and 1 handled by c2', () => runs.filter((run) => run.by === 'c2' && run.end !== undefined).length === 2, 10_000);
      const stuck = runs.find((run) => run.by === 'c1')!;
      expect(stuck.aborted).toBe(true);
      // Nothing of key k started on c2 while c1's handler still ran.
      for (const run of runs.filter((r) => r.by === 'c2')) expect(run.start).toBeGreaterThanOrEqual(stuck.end!);
      expect(runs.filter((run) => run.by === 'c2').map((run) => run.n)).toEqual([0, 1]);
    }, CASE_TIMEOUT);

    it('never starts an entry it released at close while the grant to start it was on its way: the instance that claims it runs it, once', async () => {
      // c1 reaches Redis through a proxy that delays each way by 60 ms, so that its BEGIN (which
      // grants the run) is still on its way back when close() releases the entry. Released, the
      // entry is claimable at once: started on c1 anyway, it would run beside c2's run, without a
      // lease, and past the end of close().
      const proxy = await LatencyProxy.start({ host: '127.0.0.1', port: redis.port }, 60);
      const runs: Array<{ by: string; start: number; end?: number }> = [];
      const spec = (by: string): ConsumerSpec => ({
        pattern: 'granted',
        group: 'g',
        run: async () => {
          const run: { by: string; start: number; end?: number } = { by, start: Date.now() };
          runs.push(run);
          await sleep(100);
          run.end = Date.now();
        },
      });
      try {
        // maxInFlight 1: holding the entry, c1's read loop waits for room, not for Redis, so close() releases at once.
        const { consumer: c1 } = await startConsumer(proxy.url, namespace, 'c1', [spec('c1')], { ...FAST, claimIdle: 3000, maxInFlight: 1 }, { shutdownTimeout: 2000 });
        // A keyed entry starts only once BEGIN has granted it.
        await client.durable.publish('granted', 0, { key: 'k' });
        for (const deadline = Date.now() + 5000; c1.holding === 0; await new Promise((resolve) => setImmediate(resolve))) {
          if (Date.now() > deadline) throw new Error('c1 never took the entry');
        }
        const closing = Date.now();
        await c1.close();
        expect(c1.stats.released).toBe(1);
        await consume('c2', [spec('c2')], { claimIdle: 3000, claimInterval: 50 });
        await waitFor('c2 to run the released entry', () => runs.some((run) => run.by === 'c2' && run.end !== undefined), 5000);
        await sleep(300);
        expect(runs.map((run) => run.by)).toEqual(['c2']);
        expect(runs[0]!.start).toBeGreaterThan(closing);
      } finally {
        await proxy.stop();
      }
    }, CASE_TIMEOUT);

    it('closes within shutdownTimeout when Redis is gone, and the entries it held are claimed elsewhere once Redis is back', async () => {
      const own = await startRedis(DURABLE_AOF);
      const ownClient = new BufferClient({ redis: own.url, namespace, durable: FAST });
      try {
        const done: string[] = [];
        let holdForever = true;
        const spec = (name: string): ConsumerSpec => ({
          pattern: 'stuck',
          group: 'g',
          retryDelay: 10_000,
          run: async (d) => {
            if (holdForever && name === 'c1') throw new Error('fails on c1 until Redis dies');
            done.push(`${name}:${String(d.data)}`);
          },
        });
        const { consumer: c1 } = await startConsumer(own.url, namespace, 'c1', [spec('c1')], FAST, { shutdownTimeout: 500 });
        for (let n = 0; n < 3; n++) await ownClient.durable.publish('stuck', n);
        await waitFor('3 failures', () => c1.stats.failed === 3);
        await own.kill();
        const closingAt = Date.now();
        await c1.close();
        expect(Date.now() - closingAt).toBeLessThan(500 + 400);
        holdForever = false;
        await own.restart();
        const { consumer: c2 } = await startConsumer(own.url, namespace, 'c2', [spec('c2')], FAST);
        consumers.push(c2);
        await waitFor('c2 to claim the 3 entries after claimIdle', () => done.length === 3, 5000);
        expect(done.sort()).toEqual(['c2:0', 'c2:1', 'c2:2']);
      } finally {
        await ownClient.close();
        await own.stop();
      }
    }, CASE_TIMEOUT);
  });

  describe('idempotency', () => {
    it('publishing twice with one idempotencyKey adds one entry and returns its id both times', async () => {
      let runs = 0;
      await consume('c1', [{ pattern: 'pay', group: 'g', run: async () => void runs++ }]);
      const first = await client.durable.publish('pay', { amount: 5 }, { idempotencyKey: 'payment-1' });
      const second = await client.durable.publish('pay', { amount: 5 }, { idempotencyKey: 'payment-1' });
      expect(second).toBe(first);
      expect(await raw.xlen(client.durable.keysFor('pay').stream)).toBe(1);
      await waitFor('one run', () => runs === 1);
      await sleep(200);
      expect(runs).toBe(1);
    }, CASE_TIMEOUT);

    it('runs an idempotency key to success at most once per group, even for entries added around the publisher and handled at once by two instances', async () => {
      const runs: Record<string, number> = { a: 0, b: 0 };
      const spec = (group: 'a' | 'b'): ConsumerSpec => ({
        pattern: 'dup',
        group,
        run: async () => {
          runs[group]!++;
          await sleep(100);
        },
      });
      await consume('a1', [spec('a'), spec('b')]);
      await consume('a2', [spec('a')]);
      const stream = client.durable.keysFor('dup').stream;
      // Three entries with the same key (as three publishers outside the window would write them).
      for (let n = 0; n < 3; n++) await raw.xadd(stream, '*', 'v', '1', 'pattern', 'dup', 'data', String(n), 'idem', 'same');
      await raw.xadd(stream, '*', 'v', '1', 'pattern', 'dup', 'data', '9', 'idem', 'other');
      await waitFor('every entry acknowledged', async () => ((await raw.xpending(stream, 'a')) as [number])[0] === 0 && ((await raw.xpending(stream, 'b')) as [number])[0] === 0 && runs.a + runs.b >= 4);
      await sleep(200);
      expect(runs).toEqual({ a: 2, b: 2 });
      expect(consumers.reduce((sum, consumer) => sum + consumer.stats.duplicates, 0)).toBe(4);
    }, CASE_TIMEOUT);

    it('a failed attempt does not count as done: the retry runs', async () => {
      const attempts: number[] = [];
      await consume('c1', [
        {
          pattern: 'retry-idem',
          group: 'g',
          run: async (d) => {
            attempts.push(d.attempt);
            if (d.attempt === 1) throw new Error('first fails');
          },
        },
      ]);
      await client.durable.publish('retry-idem', 1, { idempotencyKey: 'k' });
      await waitFor('two attempts', () => attempts.length === 2);
      await sleep(150);
      expect(attempts).toEqual([1, 2]);
    }, CASE_TIMEOUT);
  });

  describe('ordering', () => {
    it('handles entries with the same key in publication order within a group, across three instances', async () => {
      const order: Array<{ key: string; seq: number; by: string }> = [];
      let running = 0;
      let maxParallel = 0;
      const spec = (name: string): ConsumerSpec => ({
        pattern: 'ordered',
        group: 'g',
        run: async (d) => {
          running++;
          maxParallel = Math.max(maxParallel, running);
          const { key, seq } = d.data as { key: string; seq: number };
          await sleep(Math.random() * 4);
          order.push({ key, seq, by: name });
          running--;
        },
      });
      for (const name of ['o1', 'o2', 'o3']) await consume(name, [spec(name)]);
      const keys = ['k0', 'k1', 'k2', 'k3', 'k4'];
      const perKey = 20;
      for (let seq = 0; seq < perKey; seq++) {
        await Promise.all(keys.map((key) => client.durable.publish('ordered', { key, seq }, { key })));
      }
      await waitFor('100 entries', () => order.length === keys.length * perKey, 20_000);
      for (const key of keys) {
        expect(order.filter((o) => o.key === key).map((o) => o.seq)).toEqual([...Array(perKey).keys()]);
      }
      // Different keys did run side by side, on more than one instance.
      expect(maxParallel).toBeGreaterThan(1);
      expect(new Set(order.map((o) => o.by)).size).toBeGreaterThan(1);
    }, CASE_TIMEOUT);

    it('holds the next entry of a key while the earlier one is being retried', async () => {
      const log: string[] = [];
      await consume('c1', [
        {
          pattern: 'ordered-retry',
          group: 'g',
          run: async (d) => {
            log.push(`${String(d.data)}#${d.attempt}`);
            if (d.data === 'first' && d.attempt < 3) throw new Error('not yet');
          },
        },
      ]);
      await client.durable.publish('ordered-retry', 'first', { key: 'account-7' });
      await client.durable.publish('ordered-retry', 'second', { key: 'account-7' });
      await client.durable.publish('ordered-retry', 'unkeyed');
      await waitFor('both keyed entries', () => log.includes('second#1'));
      expect(log.filter((line) => line !== 'unkeyed#1')).toEqual(['first#1', 'first#2', 'first#3', 'second#1']);
      // The unkeyed entry did not wait behind the key.
      expect(log.indexOf('unkeyed#1')).toBeLessThan(log.indexOf('first#3'));
    }, CASE_TIMEOUT);
  });

  describe('retention', () => {
    it('(the hazard) Redis 7.0 XTRIM MAXLEN deletes pending entries silently; the consumer notices when it claims them', async () => {
      const stream = client.durable.keysFor('hazard').stream;
      await raw.xgroup('CREATE', stream, 'g', '0', 'MKSTREAM');
      for (let n = 0; n < 5; n++) await client.durable.publish('hazard', n);
      await raw.xreadgroup('GROUP', 'g', 'ghost', 'COUNT', 10, 'STREAMS', stream, '>');
      expect(await raw.xtrim(stream, 'MAXLEN', 0)).toBe(5);
      expect(((await raw.xpending(stream, 'g')) as [number])[0]).toBe(5);
      const { consumer, logger } = await startConsumer(redis.url, namespace, 'c1', [{ pattern: 'hazard', group: 'g', run: async () => undefined }], FAST);
      consumers.push(consumer);
      await waitFor('the deleted entries to be noticed', () => consumer.stats.deletedWhilePending === 5);
      expect(logger.lines.some((line) => line.startsWith('error 5 pending entries of "hazard"'))).toBe(true);
    }, CASE_TIMEOUT);

    it('never trims an entry a group has not acknowledged, nor one it has not received yet', async () => {
      const trimming = new BufferClient({ redis: redis.url, namespace, durable: { maxLength: 5, approximateTrim: false } });
      try {
        const stream = trimming.durable.keysFor('kept').stream;
        let release!: () => void;
        const gate = new Promise<void>((resolve) => (release = resolve));
        const fastDone: string[] = [];
        await consume('fast', [{ pattern: 'kept', group: 'fast', run: async (d) => void fastDone.push(d.entryId) }]);
        // Group "slow" takes 3 entries and sits on them; its other entries wait undelivered.
        await consume('slow', [{ pattern: 'kept', group: 'slow', run: () => gate }], { maxInFlight: 3 });
        const ids: string[] = [];
        for (let n = 0; n < 50; n++) ids.push(await trimming.durable.publish('kept', n));
        await waitFor('group fast done', () => fastDone.length === 50);

        const held = await trimming.durable.trim('kept');
        expect(held).toMatchObject({ trimmed: 0, heldBackByUnacknowledged: true, threshold: ids[0] });
        expect(await raw.xlen(stream)).toBe(50);

        release();
        await waitFor('group slow done', async () => ((await raw.xinfo('GROUPS', stream)) as unknown[][]).every((g) => g[7] === ids[49] && g[5] === 0));
        const result = await trimming.durable.trim('kept');
        expect(result).toMatchObject({ trimmed: 45, heldBackByUnacknowledged: false });
        expect(((await raw.xrange(stream, '-', '+')) as Array<[string, string[]]>).map(([id]) => id)).toEqual(ids.slice(45));
      } finally {
        await trimming.close();
      }
    }, CASE_TIMEOUT);

    it('consuming instances trim their streams every trimInterval', async () => {
      const consumer = await consume('c1', [{ pattern: 'auto-trim', group: 'g', run: async () => undefined }], { maxLength: 5, approximateTrim: false, trimInterval: 100 });
      for (let n = 0; n < 50; n++) await client.durable.publish('auto-trim', n);
      const stream = client.durable.keysFor('auto-trim').stream;
      await waitFor('the stream trimmed to 5', async () => (await raw.xlen(stream)) === 5);
      // The count is taken once the trim's answer is back in the consumer, a moment after Redis ran it.
      await waitFor('45 trimmed counted', async () => consumer.stats.trimmed >= 45);
      expect(consumer.stats.trimmed).toBe(45);
    }, CASE_TIMEOUT);

    it('reads the server version once and uses the Redis 7.0 trim script on a server without XTRIM ACKED', async () => {
      const version = /redis_version:([^\r\n]+)/.exec(await raw.info('server'))![1];
      const features = await client.durable.serverFeatures();
      expect(features.version).toBe(version);
      // This suite runs Redis 7.x: none of the Redis 8 stream commands.
      expect(features).toMatchObject({ trimAcked: false, idempotentAdd: false, nack: false });
    }, CASE_TIMEOUT);

    it('falls back to the 7.0 script when a server taken for 8.2 refuses XTRIM ACKED, without losing the trim', async () => {
      const connection = await openDurableConnection({ redis: redis.url, cluster: undefined, connectTimeout: 5_000, connectionName: 'trim-fallback', offlineQueue: false });
      try {
        // The server says 7.x; the connection is told it has 8.2's XTRIM ACKED, as after a failover
        // to an older node: the ACKED script fails on the real server and the trim must still happen.
        assumeStreamFeatures(connection, { version: '8.2.0', trimAcked: true, idempotentAdd: false, nack: false });
        const consumer = await consume('c1', [{ pattern: 'fallback', group: 'g', run: async () => undefined }]);
        for (let n = 0; n < 20; n++) await client.durable.publish('fallback', n);
        const stream = client.durable.keysFor('fallback').stream;
        await waitFor('all acknowledged', async () => ((await raw.xinfo('GROUPS', stream)) as unknown[][]).every((g) => g[5] === 0 && g[7] !== '0-0'));
        // Nothing else may run a script while they are counted.
        await consumer.close();
        const before = await scriptCalls();
        const result = await trimStream(connection, stream, { maxLength: 5, maxAge: undefined, approximateTrim: false });
        expect(result).toMatchObject({ trimmed: 15, heldBackByUnacknowledged: false });
        expect(await raw.xlen(stream)).toBe(5);
        expect(await streamFeatures(connection)).toMatchObject({ trimAcked: false });
        // Two scripts ran the first time (the refused one, then the 7.0 one), one from then on.
        expect((await scriptCalls()) - before).toBe(2);
        await trimStream(connection, stream, { maxLength: 5, maxAge: undefined, approximateTrim: false });
        expect((await scriptCalls()) - before).toBe(3);
      } finally {
        connection.disconnect();
      }
    }, CASE_TIMEOUT);

    async function scriptCalls(): Promise<number> {
      const stats = await raw.info('commandstats');
      let calls = 0;
      for (const match of stats.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)) calls += Number(match[1]);
      return calls;
    }

    it('trims by age, again only what every group acknowledged', async () => {
      const trimming = new BufferClient({ redis: redis.url, namespace, durable: { maxLength: 0, maxAge: 200, approximateTrim: false } });
      try {
        await consume('c1', [{ pattern: 'aged', group: 'g', run: async () => undefined }]);
        for (let n = 0; n < 10; n++) await trimming.durable.publish('aged', n);
        await sleep(300);
        const fresh = await trimming.durable.publish('aged', 'fresh');
        await waitFor('all acknowledged', async () => ((await raw.xpending(trimming.durable.keysFor('aged').stream, 'g')) as [number])[0] === 0);
        expect(await trimming.durable.trim('aged')).toMatchObject({ trimmed: 10 });
        expect(((await raw.xrange(trimming.durable.keysFor('aged').stream, '-', '+')) as Array<[string, string[]]>).map(([id]) => id)).toEqual([fresh]);
      } finally {
        await trimming.close();
      }
    }, CASE_TIMEOUT);
  });
});
