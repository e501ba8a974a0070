// Durable messaging (Redis Streams) on a Redis Cluster of 3 masters with a replica each: the
// streams live on the masters that own their hash slots, a consumer reading streams of several
// slots wakes for each of them, `durable.replicas` waits (WAIT) on the node that took each entry,
// and a master SIGKILLed under a stream loses no entry.
import { BufferClient, BufferErrorCode, DurableConsumer, ReplicasUnconfirmedError, resolveBufferOptions, resolveDurableHandlerOptions, type DurableDelivery } from 'nestjs-redis-buffer';
import { MemoryLogger, report, waitFor } from '../support/durable.js';
import { sleep } from '../support/raw-redis.js';
import { startCluster, type TestCluster } from '../support/redis-cluster.js';

const FAST = { claimIdle: 1000, claimInterval: 200, retryDelay: 20, maxRetryDelay: 80 } as const;
// How long a node may be unreachable before its replica takes over (cluster-node-timeout).
const NODE_TIMEOUT = 2000;

describe('durable messaging on a Redis Cluster', () => {
  let cluster: TestCluster;
  let connection: { cluster: { nodes: Array<{ host: string; port: number }> } };
  let client: BufferClient;
  let consumers: DurableConsumer[] = [];
  let nsCounter = 0;
  let namespace: string;

  beforeAll(async () => {
    cluster = await startCluster({ masters: 3, replicasPerMaster: 1, nodeTimeout: NODE_TIMEOUT });
    connection = { cluster: { nodes: cluster.startupNodes.map((node) => ({ ...node })) } };
  }, 90_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  beforeEach(() => {
    namespace = `cd${++nsCounter}`;
    consumers = [];
    client = new BufferClient({ ...connection, namespace, durable: FAST, timeout: 2000 });
  });

  afterEach(async () => {
    await Promise.all(consumers.map((consumer) => consumer.close()));
    await client.close();
  });

  async function consume(instanceId: string, patterns: string[], run: (delivery: DurableDelivery) => Promise<void>): Promise<{ consumer: DurableConsumer; logger: MemoryLogger }> {
    const options = resolveBufferOptions({ ...connection, namespace, instanceId, shutdownTimeout: 2000, durable: FAST });
    const logger = new MemoryLogger();
    const consumer = new DurableConsumer(
      options,
      patterns.map((pattern) => ({ pattern, run, options: resolveDurableHandlerOptions(options.durable, { group: 'g' }) })),
      logger,
    );
    await consumer.start();
    consumers.push(consumer);
    return { consumer, logger };
  }

  /** Patterns whose streams live on `count` different masters. */
  async function patternsOnDistinctMasters(count: number): Promise<Array<{ pattern: string; master: number }>> {
    const found = new Map<number, string>();
    for (let n = 0; found.size < count; n++) {
      const pattern = `orders.${n}`;
      const master = await cluster.masterOf(await cluster.slotOf(client.durable.keysFor(pattern).stream));
      if (!found.has(master)) found.set(master, pattern);
    }
    return [...found].map(([master, pattern]) => ({ pattern, master }));
  }

  it('streams live on the masters that own them; keyed entries keep their order; one consumer wakes for every slot it reads', async () => {
    const targets = await patternsOnDistinctMasters(3);
    const seen = new Map<string, Array<{ key: string | undefined; n: number }>>();
    const run = async (delivery: DurableDelivery): Promise<void> => {
      const list = seen.get(delivery.pattern) ?? [];
      list.push({ key: delivery.key, n: (delivery.data as { n: number }).n });
      seen.set(delivery.pattern, list);
    };
    const { consumer: first } = await consume('c1', targets.map(({ pattern }) => pattern), run);
    const { consumer: second } = await consume('c2', targets.map(({ pattern }) => pattern), run);
    for (let n = 0; n < 30; n++) {
      for (const { pattern } of targets) await client.durable.publish(pattern, { n }, { key: `k${n % 3}` });
    }
    await waitFor('90 deliveries', () => [...seen.values()].reduce((sum, list) => sum + list.length, 0) === 90, 20_000);
    for (const { pattern, master } of targets) {
      expect(Number(await cluster.exec(master, 'XLEN', client.durable.keysFor(pattern).stream))).toBe(30);
      const list = seen.get(pattern)!;
      expect(list.map(({ n }) => n).sort((a, b) => a - b)).toEqual([...Array(30).keys()]);
      // Per key, in publication order, across both consumers.
      for (const key of ['k0', 'k1', 'k2']) {
        const ns = list.filter((entry) => entry.key === key).map(({ n }) => n);
        expect(ns).toEqual([...ns].sort((a, b) => a - b));
      }
    }
    // Idle: both consumers block on every slot. An entry on each slot is picked up promptly, not
    // by a poll after an error (one XREAD across slots would be refused with CROSSSLOT).
    await sleep(300);
    for (const { pattern } of targets) {
      const before = seen.get(pattern)!.length;
      const started = Date.now();
      await client.durable.publish(pattern, { n: 100 });
      await waitFor(`the idle entry on ${pattern}`, () => seen.get(pattern)!.length === before + 1, 5000);
      expect(Date.now() - started).toBeLessThan(1000);
    }
    expect(first.stats.redisErrors + second.stats.redisErrors).toBe(0);
  }, 60_000);

  it('a group bound to a wildcard pattern gets the entries of topics whose streams live on other masters, once each with an idempotent retry, keys in order', async () => {
    const topics = await patternsOnDistinctMasters(3);
    const seen: Array<{ topic: string; binding: string; key: string | undefined; n: number }> = [];
    const { consumer } = await consume('c1', ['orders.*'], async (delivery) => void seen.push({ topic: delivery.pattern, binding: delivery.binding, key: delivery.key, n: (delivery.data as { n: number }).n }));
    const bindingMaster = await cluster.masterOf(await cluster.slotOf(client.durable.keysFor('orders.*').stream));
    // The binding's stream shares a master with at most one of the three topics.
    expect(topics.filter(({ master }) => master !== bindingMaster).length).toBeGreaterThanOrEqual(2);
    for (let n = 0; n < 10; n++) {
      for (const { pattern } of topics) {
        const options = { key: `k${n % 2}`, idempotencyKey: `${pattern}-${n}` };
        const id = await client.durable.publish(pattern, { n }, options);
        // A publisher retrying after an unknown outcome: every stream already has it.
        expect(await client.durable.publish(pattern, { n }, options)).toBe(id);
      }
    }
    await waitFor('30 deliveries', () => seen.length >= 30, 20_000);
    await sleep(300);
    expect(seen).toHaveLength(30);
    expect(Number(await cluster.exec(bindingMaster, 'XLEN', client.durable.keysFor('orders.*').stream))).toBe(30);
    for (const { pattern, master } of topics) {
      expect(Number(await cluster.exec(master, 'XLEN', client.durable.keysFor(pattern).stream))).toBe(10);
      const mine = seen.filter((entry) => entry.topic === pattern);
      expect(mine.map(({ n }) => n).sort((a, b) => a - b)).toEqual([...Array(10).keys()]);
      for (const key of ['k0', 'k1']) {
        const ns = mine.filter((entry) => entry.key === key).map(({ n }) => n);
        expect(ns).toEqual([...ns].sort((a, b) => a - b));
      }
    }
    expect(new Set(seen.map(({ binding }) => binding))).toEqual(new Set(['orders.*']));
    expect(await client.durable.bindings()).toEqual(['orders.*']);
    expect(consumer.stats.redisErrors).toBe(0);
  }, 60_000);

  it('durable.replicas: WAIT goes to the node that took each entry; with one replica SIGSTOPped only the streams of its master reject, and the retry confirms the same entry', async () => {
    const targets = await patternsOnDistinctMasters(3);
    const [stopped, ...others] = targets;
    const replica = await cluster.replicaOf(stopped!.master);
    const confirmed = new BufferClient({ ...connection, namespace, durable: { ...FAST, replicas: { min: 1, timeout: 400 } }, timeout: 2000 });
    const waitsOn = async (port: number): Promise<number> => Number(/cmdstat_wait:calls=(\d+)/.exec(String(await cluster.exec(port, 'INFO', 'commandstats')))?.[1] ?? 0);
    try {
      // Every master has one replica: each publish is confirmed by its own master's.
      for (let n = 0; n < 5; n++) for (const { pattern } of targets) await confirmed.durable.publish(pattern, { n }, { idempotencyKey: `${pattern}-${n}` });
      const waitsBefore = await Promise.all(targets.map(({ master }) => waitsOn(master)));
      cluster.node(replica).signal('SIGSTOP');
      let outcomes: Array<{ pattern: string; outcome: unknown; ms: number }>;
      try {
        outcomes = await Promise.all(
          targets.map(async ({ pattern }) => {
            const started = Date.now();
            const outcome = await confirmed.durable.publish(pattern, { n: 5 }, { idempotencyKey: `${pattern}-5` }).catch((error: unknown) => error);
            return { pattern, outcome, ms: Date.now() - started };
          }),
        );
      } finally {
        cluster.node(replica).signal('SIGCONT');
      }
      const waitsAfter = await Promise.all(targets.map(({ master }) => waitsOn(master)));
      report('cluster-replica-stopped', { outcomes: outcomes.map(({ pattern, outcome, ms }) => ({ pattern, ms, result: outcome instanceof Error ? (outcome as ReplicasUnconfirmedError).code : 'confirmed' })), waitsPerMaster: waitsAfter.map((after, index) => after - waitsBefore[index]!) });
      const [onStopped, ...onOthers] = outcomes;
      expect(onStopped!.outcome).toBeInstanceOf(ReplicasUnconfirmedError);
      expect(onStopped!.outcome).toMatchObject({ code: BufferErrorCode.ReplicasUnconfirmed, pattern: stopped!.pattern, confirmed: 0, required: 1, timeout: 400 });
      expect(onStopped!.ms).toBeGreaterThanOrEqual(390);
      expect(onStopped!.ms).toBeLessThan(1500);
      for (const { outcome } of onOthers) expect(typeof outcome).toBe('string');
      // One WAIT on each master, for its own entry: none went to a node that took nothing.
      expect(waitsAfter.map((after, index) => after - waitsBefore[index]!)).toEqual([1, 1, 1]);
      const lost = onStopped!.outcome as ReplicasUnconfirmedError;
      await waitFor('the thawed replica confirming the retry', async () => {
        try {
          return (await confirmed.durable.publish(stopped!.pattern, { n: 5 }, { idempotencyKey: `${stopped!.pattern}-5` })) === lost.entryId;
        } catch (error) {
          if (error instanceof ReplicasUnconfirmedError) return false;
          throw error;
        }
      }, 10_000);
      expect(Number(await cluster.exec(stopped!.master, 'XLEN', confirmed.durable.keysFor(stopped!.pattern).stream))).toBe(6);
      for (const { pattern, master } of others) expect(Number(await cluster.exec(master, 'XLEN', confirmed.durable.keysFor(pattern).stream))).toBe(6);
    } finally {
      await confirmed.close();
    }
    await cluster.waitHealthy();
  }, 60_000);

  it('the master of a stream SIGKILLed: every entry accepted before and after the failover is handled', async () => {
    const [{ pattern, master }] = await patternsOnDistinctMasters(1);
    const handled = new Set<number>();
    await consume('c1', [pattern], async (delivery) => void handled.add((delivery.data as { n: number }).n));
    const accepted: number[] = [];
    const publish = async (n: number): Promise<void> => {
      try {
        await client.durable.publish(pattern, { n });
        accepted.push(n);
      } catch {
        // Refused while the master is down: not accepted, not expected.
      }
    };
    for (let n = 0; n < 20; n++) await publish(n);
    await waitFor('the first 20', () => handled.size === 20, 10_000);
    await cluster.node(master).kill();
    // Publish through the outage until the replica has taken over and accepted 20 more.
    let n = 20;
    const deadline = Date.now() + 30_000;
    while (accepted.filter((value) => value >= 20).length < 20 && Date.now() < deadline) {
      await publish(n++);
      await sleep(50);
    }
    expect(accepted.filter((value) => value >= 20).length).toBe(20);
    await waitFor('every accepted entry handled', () => accepted.every((value) => handled.has(value)), 20_000);
    const successor = await cluster.masterOf(await cluster.slotOf(client.durable.keysFor(pattern).stream));
    expect(successor).not.toBe(master);
    await cluster.node(master).restart();
    await cluster.waitHealthy();
  }, 90_000);
});
