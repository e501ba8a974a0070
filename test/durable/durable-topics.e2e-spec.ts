// Durable topics (groups bound to wildcard patterns) and routing by header, core layer (no Nest),
// against a real redis-server: which group gets what, bindings made before a topic's first entry,
// a publisher whose view of the bindings is older than a consumer's start, idempotent retries that
// fill a partial publish, dead letters and replay, per-key order across topics, and unbinding.
import { BufferClient, InvalidOptionsError, TopicPatternError, type DurableConsumer, type DurableDelivery } from 'nestjs-redis-buffer';
import type { Redis } from 'ioredis';
import { sleep } from '../support/raw-redis.js';
import { useRedisServer, type TestRedis } from '../support/redis-server.js';
import { startConsumer, waitFor, type ConsumerSpec } from '../support/durable.js';

const FAST = { claimIdle: 300, claimInterval: 100, retryDelay: 20, maxRetryDelay: 80 } as const;
const CASE_TIMEOUT = 30_000;

describe('durable topics (core)', () => {
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
    namespace = `t${++nsCounter}`;
    consumers = [];
    client = new BufferClient({ redis: redis.url, namespace, durable: FAST });
  });

  afterEach(async () => {
    await Promise.all(consumers.map((consumer) => consumer.close()));
    await client.close();
  });

  async function consume(instanceId: string, specs: ConsumerSpec[], durable: Record<string, unknown> = {}): Promise<DurableConsumer> {
    const { consumer } = await startConsumer(redis.url, namespace, instanceId, specs, { ...FAST, ...durable });
    consumers.push(consumer);
    return consumer;
  }

  /** A handler that records each delivery under its group. */
  function recorder(): { seen: Record<string, DurableDelivery[]>; spec: (pattern: string, group: string, extra?: Partial<ConsumerSpec>) => ConsumerSpec } {
    const seen: Record<string, DurableDelivery[]> = {};
    return {
      seen,
      spec: (pattern, group, extra = {}) => ({ pattern, group, ...extra, run: async (delivery) => void (seen[group] ??= []).push(delivery) }),
    };
  }

  const topicsOf = (deliveries: readonly DurableDelivery[] = []): string[] => deliveries.map((delivery) => delivery.pattern).sort();

  it('gives each group exactly the topics its pattern matches: "*" one token, ">" one or more, exact only itself', async () => {
    const { seen, spec } = recorder();
    await consume('c1', [spec('order.*', 'star'), spec('order.>', 'rest'), spec('order.created', 'exact'), spec('*.created', 'created')]);
    const topics = ['order.created', 'order.shipped', 'order.created.eu', 'invoice.created', 'order', 'orders.created'];
    for (const topic of topics) await client.durable.publish(topic, { topic });
    const expected = {
      star: ['order.created', 'order.shipped'],
      rest: ['order.created', 'order.created.eu', 'order.shipped'],
      exact: ['order.created'],
      created: ['invoice.created', 'order.created', 'orders.created'],
    };
    const total = Object.values(expected).reduce((sum, list) => sum + list.length, 0);
    await waitFor(`${total} deliveries`, () => Object.values(seen).reduce((sum, list) => sum + list.length, 0) >= total);
    await sleep(300);
    for (const [group, wanted] of Object.entries(expected)) expect({ group, topics: topicsOf(seen[group]) }).toEqual({ group, topics: wanted });
    // The handler sees the topic the entry was published to, and the binding that brought it.
    const shipped = seen.star!.find((delivery) => delivery.pattern === 'order.shipped')!;
    expect(shipped).toMatchObject({ pattern: 'order.shipped', binding: 'order.*', group: 'star', data: { topic: 'order.shipped' }, attempt: 1 });
    expect(seen.exact![0]).toMatchObject({ pattern: 'order.created', binding: 'order.created' });
    // Every group acknowledged everything.
    for (const pattern of ['order.*', 'order.>', 'order.created', '*.created']) {
      const stream = client.durable.keysFor(pattern).stream;
      for (const group of (await raw.xinfo('GROUPS', stream)) as unknown[]) expect((group as unknown[])[5]).toBe(0);
    }
    expect(await client.durable.bindings()).toEqual(['*.created', 'order.*', 'order.>']);
  }, CASE_TIMEOUT);

  it('routes to a binding made after the publisher last read the bindings (no stale cache), and to topics first published after the group started', async () => {
    // The publisher reads the (empty) registry with its first publishes.
    await client.durable.publish('pay.warmup', 0);
    await client.durable.publish('pay.warmup', 1);
    const { seen, spec } = recorder();
    await consume('c1', [spec('pay.*', 'ledger')], { newGroupStartsAt: 'beginning' });
    // Published before the binding existed: not routed, and 'beginning' is the binding stream's beginning.
    await client.durable.publish('pay.new', 'first-ever');
    await client.durable.publish('pay.refund', 'another-new-topic');
    await waitFor('2 deliveries', () => (seen.ledger?.length ?? 0) >= 2);
    await sleep(200);
    expect(seen.ledger!.map((delivery) => [delivery.pattern, delivery.data])).toEqual([
      ['pay.new', 'first-ever'],
      ['pay.refund', 'another-new-topic'],
    ]);
    // A second binding, registered while the same publisher keeps publishing, is seen at once.
    await consume('c2', [spec('pay.>', 'audit')]);
    await client.durable.publish('pay.new', 'after-second-binding');
    await waitFor('the audit delivery', () => (seen.audit?.length ?? 0) >= 1);
    expect(seen.audit!.map((delivery) => delivery.data)).toEqual(['after-second-binding']);
  }, CASE_TIMEOUT);

  it('a group with no consumer running keeps receiving its topics (the binding stays) and catches up when one starts', async () => {
    const first = recorder();
    const consumer = await consume('c1', [first.spec('stock.*', 'warehouse')]);
    await consumer.close();
    consumers = [];
    for (let n = 0; n < 10; n++) await client.durable.publish(`stock.${n % 2 === 0 ? 'in' : 'out'}`, n);
    const later = recorder();
    await consume('c2', [later.spec('stock.*', 'warehouse')]);
    await waitFor('10 deliveries', () => (later.seen.warehouse?.length ?? 0) >= 10);
    expect(later.seen.warehouse!.map((delivery) => delivery.data)).toEqual([...Array(10).keys()]);
  }, CASE_TIMEOUT);

  it('an idempotent retry adds nothing to any stream, and fills a stream a partial publish missed', async () => {
    const { seen, spec } = recorder();
    const consumer = await consume('c1', [spec('ship.*', 'carrier'), spec('ship.created', 'exact')]);
    const id = await client.durable.publish('ship.created', { n: 1 }, { idempotencyKey: 'ship-1' });
    expect(await client.durable.publish('ship.created', { n: 1 }, { idempotencyKey: 'ship-1' })).toBe(id);
    const bindingKeys = client.durable.keysFor('ship.*');
    const topicKeys = client.durable.keysFor('ship.created');
    expect(await raw.xlen(topicKeys.stream)).toBe(1);
    expect(await raw.xlen(bindingKeys.stream)).toBe(1);
    await waitFor('both groups', () => (seen.carrier?.length ?? 0) === 1 && (seen.exact?.length ?? 0) === 1);

    // The state a publisher leaves when it dies between its appends (the topic's stream has the
    // entry, the binding's does not), made while no consumer reads: its caller's retry with the
    // same key fills the gap only, and each group runs the entry once.
    await consumer.close();
    consumers = [];
    const partialId = await client.durable.publish('ship.created', { n: 2 }, { idempotencyKey: 'ship-2' });
    const [[routedId]] = (await raw.xrevrange(bindingKeys.stream, '+', '-', 'COUNT', 1)) as Array<[string, string[]]>;
    expect(await raw.xdel(bindingKeys.stream, routedId!)).toBe(1);
    expect(await raw.del(bindingKeys.published('ship-2'))).toBe(1);
    expect(await client.durable.publish('ship.created', { n: 2 }, { idempotencyKey: 'ship-2' })).toBe(partialId);
    expect(await raw.xlen(topicKeys.stream)).toBe(2);
    expect(await raw.xlen(bindingKeys.stream)).toBe(2);
    await consume('c2', [spec('ship.*', 'carrier'), spec('ship.created', 'exact')]);
    await waitFor('the second entry in both groups', () => (seen.carrier?.length ?? 0) === 2 && (seen.exact?.length ?? 0) === 2);
    await sleep(300);
    expect(seen.exact!.map((delivery) => (delivery.data as { n: number }).n)).toEqual([1, 2]);
    expect(seen.carrier!.map((delivery) => (delivery.data as { n: number }).n)).toEqual([1, 2]);
  }, CASE_TIMEOUT);

  it('dead-letters a failing entry in the wildcard group only, and the replay keeps its topic and runs in that group only', async () => {
    let heal = false;
    const runs: Record<string, Array<{ topic: string; attempt: number }>> = { fragile: [], sturdy: [] };
    await consume('c1', [
      {
        pattern: 'mail.*',
        group: 'fragile',
        maxAttempts: 2,
        run: async (delivery) => {
          runs.fragile!.push({ topic: delivery.pattern, attempt: delivery.attempt });
          if (!heal) throw new Error('smtp down');
        },
      },
      { pattern: 'mail.*', group: 'sturdy', run: async (delivery) => void runs.sturdy!.push({ topic: delivery.pattern, attempt: delivery.attempt }) },
    ]);
    const entryId = await client.durable.publish('mail.welcome', { to: 'x' }, { key: 'user-1', idempotencyKey: 'welcome-1' });
    await waitFor('a dead letter', async () => (await client.durable.deadLetters('mail.*', 'fragile')).length === 1);
    const [dead] = await client.durable.deadLetters('mail.*', 'fragile');
    expect(dead).toMatchObject({ group: 'fragile', attempts: 2, entry: { pattern: 'mail.welcome', data: { to: 'x' }, key: 'user-1', idempotencyKey: 'welcome-1' } });
    // The dead letter points at the entry in the binding's stream (its id is that stream's own).
    expect(entryId).toMatch(/^\d+-\d+$/);
    expect(await raw.xrange(client.durable.keysFor('mail.*').stream, dead!.entryId, dead!.entryId)).toHaveLength(1);
    heal = true;
    await client.durable.replayDeadLetter('mail.*', 'fragile', dead!.id);
    await waitFor('the replayed run', () => runs.fragile!.length === 3);
    await sleep(300);
    expect(runs.fragile).toEqual([
      { topic: 'mail.welcome', attempt: 1 },
      { topic: 'mail.welcome', attempt: 2 },
      { topic: 'mail.welcome', attempt: 1 },
    ]);
    expect(runs.sturdy).toEqual([{ topic: 'mail.welcome', attempt: 1 }]);
    expect(await client.durable.deadLetters('mail.*', 'fragile')).toEqual([]);
  }, CASE_TIMEOUT);

  it('trims, at publish, a topic stream no group reads (its entries only travel on to bindings), never a binding\'s', async () => {
    const trimming = new BufferClient({ redis: redis.url, namespace, durable: { ...FAST, maxLength: 5, approximateTrim: false } });
    try {
      const { seen, spec } = recorder();
      await consume('c1', [spec('metric.*', 'g')]);
      for (let n = 0; n < 20; n++) await trimming.durable.publish('metric.cpu', n);
      await waitFor('20 deliveries', () => (seen.g?.length ?? 0) === 20);
      expect(await raw.xlen(trimming.durable.keysFor('metric.cpu').stream)).toBe(5);
      expect(await raw.xlen(trimming.durable.keysFor('metric.*').stream)).toBe(20);
      // Once a group reads the topic's stream, only retention (never past what it needs) trims it.
      await consume('c2', [spec('metric.cpu', 'exact')], { newGroupStartsAt: 'end' });
      for (let n = 0; n < 20; n++) await trimming.durable.publish('metric.cpu', n);
      expect(await raw.xlen(trimming.durable.keysFor('metric.cpu').stream)).toBe(25);
    } finally {
      await trimming.close();
    }
  }, CASE_TIMEOUT);

  it('binds again when Redis lost its data under a running consumer (the group is created again, and so is the binding)', async () => {
    const { seen, spec } = recorder();
    await consume('c1', [spec('wipe.*', 'g')]);
    await client.durable.publish('wipe.a', 'before');
    await waitFor('the first delivery', () => (seen.g?.length ?? 0) === 1);
    // What FLUSHALL or a restart without persistence does to this namespace.
    const keys = await raw.keys(`${namespace}:*`);
    await raw.del(...keys);
    expect(await client.durable.bindings()).toEqual([]);
    // The reader notices the lost group at its next read (within its 5 s block), creates it again and binds again.
    await waitFor('the binding back', async () => (await client.durable.bindings()).includes('wipe.*'), 15_000);
    await client.durable.publish('wipe.a', 'after');
    await waitFor('the delivery after the wipe', () => (seen.g?.length ?? 0) === 2);
    expect(seen.g!.map((delivery) => delivery.data)).toEqual(['before', 'after']);
  }, CASE_TIMEOUT);

  it('runs an entry written by hand to a binding\'s stream when its topic matches, and dead-letters one whose topic does not, unrun', async () => {
    const { seen, spec } = recorder();
    await consume('c1', [spec('task.*', 'g')]);
    const stream = client.durable.keysFor('task.*').stream;
    await raw.xadd(stream, '*', 'v', '1', 'pattern', 'task.build', 'data', '"by hand"');
    const foreign = await raw.xadd(stream, '*', 'v', '1', 'pattern', 'job.build', 'data', '"elsewhere"');
    await waitFor('the dead letter', async () => (await client.durable.deadLetters('task.*', 'g')).length === 1);
    const [dead] = await client.durable.deadLetters('task.*', 'g');
    expect(dead).toMatchObject({ entryId: foreign, attempts: 0, error: { code: 'BUFFER_BAD_ENTRY', message: expect.stringContaining('it names pattern "job.build"') } });
    expect(seen.g!.map((delivery) => [delivery.pattern, delivery.data])).toEqual([['task.build', 'by hand']]);
  }, CASE_TIMEOUT);

  it('keeps per-key order in a wildcard group across the topics it matches', async () => {
    const order: Record<string, number[]> = {};
    await consume('c1', [
      {
        pattern: 'acct.>',
        group: 'books',
        run: async (delivery) => {
          const { account, n } = delivery.data as { account: string; n: number };
          await sleep(n % 3);
          (order[account] ??= []).push(n);
        },
      },
    ]);
    const topics = ['acct.open', 'acct.credit', 'acct.debit.card', 'acct.close'];
    for (let n = 0; n < 60; n++) {
      const account = `a${n % 3}`;
      await client.durable.publish(topics[n % topics.length]!, { account, n }, { key: account });
    }
    await waitFor('60 runs', () => Object.values(order).reduce((sum, list) => sum + list.length, 0) >= 60);
    for (const [account, ns] of Object.entries(order)) {
      expect({ account, ns }).toEqual({ account, ns: [...ns].sort((a, b) => a - b) });
      expect(ns).toHaveLength(20);
    }
  }, CASE_TIMEOUT);

  it('routes by header: a filtered handler runs only matching entries and acknowledges the rest unrun, counted', async () => {
    const { seen, spec } = recorder();
    const consumer = await consume('c1', [spec('order.*', 'eu', { headers: { region: 'eu' } }), spec('order.*', 'all')]);
    const regions = ['eu', 'us', 'eu', undefined, 'EU', 'eu'];
    for (const [n, region] of regions.entries()) await client.durable.publish('order.created', n, region === undefined ? {} : { headers: { region, n: String(n) } });
    await waitFor('every entry in group all', () => (seen.all?.length ?? 0) === regions.length);
    await waitFor('the eu group acknowledged everything', async () => ((await raw.xpending(client.durable.keysFor('order.*').stream, 'eu')) as [number])[0] === 0);
    await sleep(200);
    expect(seen.eu!.map((delivery) => delivery.data)).toEqual([0, 2, 5]);
    expect(consumer.stats.filtered).toBe(3);
    // Filtered entries are not handled: the group's idempotency markers and dead letters stay empty.
    expect(await client.durable.deadLetters('order.*', 'eu')).toEqual([]);
  }, CASE_TIMEOUT);

  it('refuses a malformed wildcard pattern at start with TopicPatternError, creating nothing', async () => {
    for (const pattern of ['order.>.x', 'order..*', '.order.*', 'order.*.']) {
      const start = startConsumer(redis.url, namespace, 'c1', [{ pattern, group: 'g', run: async () => undefined }], FAST);
      await expect(start).rejects.toBeInstanceOf(TopicPatternError);
      await expect(start).rejects.toMatchObject({ pattern, code: 'BUFFER_INVALID_OPTIONS' });
    }
    expect(await raw.keys(`${namespace}:*`)).toEqual([]);
  }, CASE_TIMEOUT);

  it('refuses to publish to a wildcard pattern (it names bindings, not a topic) and a bad header filter', async () => {
    await expect(client.durable.publish('order.*', 1)).rejects.toBeInstanceOf(TopicPatternError);
    await expect(client.durable.publish('order.>', 1)).rejects.toBeInstanceOf(TopicPatternError);
    // A "*" inside a longer token is a literal character, so this is a topic.
    await client.durable.publish('order.a*', 1);
    await expect(startConsumer(redis.url, namespace, 'c1', [{ pattern: 'x.*', group: 'g', headers: { region: 1 as unknown as string }, run: async () => undefined }], FAST)).rejects.toBeInstanceOf(InvalidOptionsError);
  }, CASE_TIMEOUT);

  it('stops routing to a binding once it is removed; a consumer starting with it binds it again', async () => {
    const { seen, spec } = recorder();
    const consumer = await consume('c1', [spec('log.*', 'sink')]);
    await client.durable.publish('log.a', 1);
    await waitFor('one delivery', () => (seen.sink?.length ?? 0) === 1);
    await consumer.close();
    consumers = [];
    expect(await client.durable.unbind('log.*')).toBe(true);
    expect(await client.durable.unbind('log.*')).toBe(false);
    await expect(client.durable.unbind('log.>.x')).rejects.toBeInstanceOf(TopicPatternError);
    expect(await client.durable.bindings()).toEqual([]);
    await client.durable.publish('log.a', 2);
    expect(await raw.xlen(client.durable.keysFor('log.*').stream)).toBe(1);
    await consume('c2', [spec('log.*', 'sink')]);
    expect(await client.durable.bindings()).toEqual(['log.*']);
    await client.durable.publish('log.a', 3);
    await waitFor('the delivery after the new binding', () => seen.sink!.length === 2);
    expect(seen.sink!.map((delivery) => delivery.data)).toEqual([1, 3]);
  }, CASE_TIMEOUT);
});
