// Durable messaging (Redis Streams) through Sentinel: entries go to the master the sentinels name.
// Redis replicates asynchronously and Sentinel promotes a replica without waiting for it to catch
// up, so an entry the old master accepted can be missing on the new one. With `durable.replicas`
// a publish resolves only once WAIT confirmed the entry on a replica: a SENTINEL FAILOVER or a
// master SIGKILL then loses no entry whose publish resolved, and a publish no replica can confirm
// rejects with ReplicasUnconfirmedError within its timeout.
import { Redis } from 'ioredis';
import { BufferClient, BufferErrorCode, ConnectionLostError, DurableConsumer, ReplicasUnconfirmedError, resolveBufferOptions, resolveDurableHandlerOptions } from 'nestjs-redis-buffer';
import { MemoryLogger, report, waitFor } from '../support/durable.js';
import { sleep } from '../support/raw-redis.js';
import { MASTER_NAME, startSentinelGroup, type TestSentinelGroup } from '../support/redis-sentinel.js';

const FAST = { claimIdle: 1000, claimInterval: 200, retryDelay: 20, maxRetryDelay: 80 } as const;
const REPLICAS = { min: 1, timeout: 500 } as const;
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
    client = new BufferClient({ ...group.connection, namespace, durable: { ...FAST, replicas: REPLICAS }, timeout: 2000 });
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

  it('a SENTINEL FAILOVER under publishing, with durable.replicas: every accepted entry is handled, and every durable connection follows the new master', async () => {
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
    // Publishing goes on after the switch, once the demoted master replicates the new one (until
    // then no replica can confirm an entry).
    await group.waitStable();
    // Right after the switch a publish may still be refused (the replica not confirming yet, a
    // connection moving): refused with a typed error, and accepted when published again with the
    // same idempotency key, as an application would.
    const settled = accepted.length;
    const refusals: string[] = [];
    for (let extra = 0; extra < 10; extra++) {
      const value = n++;
      for (let attempt = 0; ; attempt++) {
        try {
          await client.durable.publish('orders', { n: value }, { key: `k${value % 4}`, idempotencyKey: `after-${value}` });
          accepted.push(value);
          break;
        } catch (error) {
          refusals.push((error as { code?: string }).code ?? String(error));
          if (attempt === 4) throw error;
          await sleep(200);
        }
      }
    }
    expect(accepted.length - settled).toBe(10);
    for (const code of refusals) expect(code).toMatch(/^BUFFER_(REPLICAS_UNCONFIRMED|CONNECTION_LOST)$/);
    await waitFor('every accepted entry handled', () => accepted.every((value) => handled.has(value)), 20_000);
    await waitFor('every durable connection on the new master', async () => (await clientNames(before)).filter((name) => name.startsWith('rb-durable')).length === 0, 10_000);
    expect(await clientNames(after)).toEqual(expect.arrayContaining(['rb-durable:c1', 'rb-durable-read:c1', 'rb-durable-turns:c1', `rb-durable-pub:${client.instanceId}`]));
    await group.waitStable();
  }, 90_000);

  it('with durable.replicas { min: 1 }, the master SIGKILLed under 4 publishing loops, 3 times: every publish that resolved is handled after the failover', async () => {
    for (let round = 1; round <= 3; round++) {
      await group.waitStable();
      const master = await group.masterPort();
      const resolved: Array<{ n: number; at: number }> = [];
      const refused = { unconfirmed: 0, connectionLost: 0 };
      let n = round * 100_000;
      // The round is about publishes confirmed before the kill: the client's durable connection must
      // be on this master with a replica confirming (after the last round's failover it may still
      // be moving). One confirmed publish first, or the round fails saying so.
      await waitFor(
        `round ${round}: a publish confirmed before the kill`,
        async () => {
          const value = n++;
          try {
            await client.durable.publish('orders', { n: value }, { key: `k${value % 4}`, idempotencyKey: `kill-${value}` });
            resolved.push({ n: value, at: Date.now() });
            return true;
          } catch {
            return false;
          }
        },
        15_000,
      );
      let publishing = true;
      const loops = [0, 1, 2, 3].map(async () => {
        while (publishing) {
          const value = n++;
          try {
            await client.durable.publish('orders', { n: value }, { key: `k${value % 4}`, idempotencyKey: `kill-${value}` });
            resolved.push({ n: value, at: Date.now() });
          } catch (error) {
            if (error instanceof ReplicasUnconfirmedError) refused.unconfirmed++;
            else if (error instanceof ConnectionLostError) refused.connectionLost++;
            else throw error;
            await sleep(20);
          }
        }
      });
      let killed = false;
      try {
        await sleep(1000);
        const killedAt = Date.now();
        await group.server(master).kill();
        killed = true;
        for (const deadline = Date.now() + 30_000; (await group.masterPort().catch(() => master)) === master; await sleep(50)) {
          if (Date.now() > deadline) throw new Error('the sentinels did not promote the replica within 30 s');
        }
        const promotedAt = Date.now();
        // The new master has no replica until the killed server is back: nothing can be confirmed.
        await sleep(500);
        publishing = false;
        await Promise.all(loops);
        const lastBeforeKill = resolved.filter(({ at }) => at <= killedAt && at > killedAt - 100).length;
        await waitFor(`round ${round}: every resolved publish handled`, () => resolved.every(({ n: value }) => handled.has(value)), 30_000);
        const handledAt = Date.now();
        const figures = {
          round,
          resolved: resolved.length,
          resolvedInLast100msBeforeKill: lastBeforeKill,
          resolvedAfterKill: resolved.filter(({ at }) => at > killedAt).length,
          unconfirmed: refused.unconfirmed,
          connectionLost: refused.connectionLost,
          promotedMsAfterKill: promotedAt - killedAt,
          allHandledMsAfterPromotion: handledAt - promotedAt,
          missing: resolved.filter(({ n: value }) => !handled.has(value)).length,
        };
        report('sentinel-kill-replicas', figures);
        // A second of four loops publishing to a master with a live replica confirms far more.
        if (resolved.length <= 20) throw new Error(`round ${round}: only ${resolved.length} publishes confirmed before the kill: ${JSON.stringify(figures)}`);
        expect(resolved.filter(({ at }) => at > killedAt + 50)).toEqual([]);
      } finally {
        publishing = false;
        await Promise.allSettled(loops);
        // Back as a replica of the new master (Sentinel reconfigures a returning old master), also
        // when the round failed, so that the tests after it find a whole group.
        if (killed) await group.server(master).restart();
      }
    }
    await group.waitStable();
  }, 180_000);

  it('no replica can confirm (min above the replica count, or the replica SIGSTOPped): the publish rejects with ReplicasUnconfirmedError within its timeout, and a retry with the idempotency key confirms the same entry', async () => {
    await group.waitStable();
    // The test before restarted the demoted master: a publish in the moments after can still be
    // refused (a connection moving, the returning replica not confirming yet). This test is about
    // what a publish that cannot be confirmed gets, so it starts once one is confirmed.
    const refusedForNow = (rejection: unknown): false | Promise<never> => (rejection instanceof ConnectionLostError || rejection instanceof ReplicasUnconfirmedError ? false : Promise.reject(rejection));
    await waitFor('a publish confirmed by the replica', () => client.durable.publish('orders', { n: 900_000 }, { replicas: { min: 1, timeout: 300 } }).then(() => true, refusedForNow), 20_000);
    const stream = client.durable.keysFor('orders').stream;
    // One replica here: two can never confirm.
    const started = Date.now();
    const error = await client.durable.publish('orders', { n: 900_001 }, { replicas: { min: 2, timeout: 300 } }).then(
      () => undefined,
      (rejection: unknown) => rejection,
    );
    const tooManyMs = Date.now() - started;
    expect(error).toBeInstanceOf(ReplicasUnconfirmedError);
    expect(error).toMatchObject({ code: BufferErrorCode.ReplicasUnconfirmed, pattern: 'orders', stream, confirmed: 1, required: 2, timeout: 300 });
    expect((error as Error).message).toMatch(/accepted by the Redis master, but 1 of the 2 replicas required confirmed it within 300 ms: it may or may not survive a failover\. Publish again with the same idempotencyKey/);
    expect(tooManyMs).toBeGreaterThanOrEqual(290);
    expect(tooManyMs).toBeLessThan(1000);
    // Accepted by the master all the same: it runs.
    await waitFor('the unconfirmed entry handled', () => handled.has(900_001), 10_000);

    const master = await group.masterPort();
    const replica = group.servers.find((server) => server.port !== master)!;
    replica.signal('SIGSTOP');
    let stoppedResults: Array<{ outcome: unknown; ms: number }>;
    try {
      // Twenty at once share WAITs: each still ends within two of them (the one it queued behind, and its own).
      const at = Date.now();
      stoppedResults = await Promise.all(
        [...Array(20).keys()].map((index) =>
          client.durable.publish('orders', { n: 900_100 + index }, { idempotencyKey: `stopped-${index}` }).then(
            (id) => ({ outcome: id, ms: Date.now() - at }),
            (rejection: unknown) => ({ outcome: rejection, ms: Date.now() - at }),
          ),
        ),
      );
    } finally {
      replica.signal('SIGCONT');
    }
    for (const { outcome } of stoppedResults) expect(outcome).toMatchObject({ code: BufferErrorCode.ReplicasUnconfirmed, confirmed: 0, required: 1 });
    const slowest = Math.max(...stoppedResults.map(({ ms }) => ms));
    report('sentinel-replica-stopped', { publishes: 20, rejected: stoppedResults.length, fastestMs: Math.min(...stoppedResults.map(({ ms }) => ms)), slowestMs: slowest, timeoutMs: REPLICAS.timeout, tooManyReplicasMs: tooManyMs });
    expect(slowest).toBeLessThan(2 * REPLICAS.timeout + 500);
    // The replica is back: the same idempotency key returns the entry the master took, confirmed now.
    const first = (stoppedResults[0]!.outcome as ReplicasUnconfirmedError).entryId;
    await waitFor('the replica confirming again', async () => {
      try {
        return (await client.durable.publish('orders', { n: 900_100 }, { idempotencyKey: 'stopped-0' })) === first;
      } catch (retry) {
        if (retry instanceof ReplicasUnconfirmedError) return false;
        throw retry;
      }
    }, 15_000);
    const admin = new Redis({ port: master, host: '127.0.0.1', retryStrategy: () => null, maxRetriesPerRequest: 0 });
    try {
      // Never added twice: one entry carries the key, the one the first attempt added.
      const entries = (await admin.xrange(stream, '-', '+')) as Array<[string, string[]]>;
      const carrying = entries.filter(([, fields]) => fields.some((field, index) => index % 2 === 1 && fields[index - 1] === 'idem' && field === 'stopped-0')).map(([id]) => id);
      expect(carrying).toEqual([first]);
    } finally {
      admin.disconnect();
    }
    await waitFor('the twenty unconfirmed entries handled', () => [...Array(20).keys()].every((index) => handled.has(900_100 + index)), 10_000);
    await group.waitStable();
  }, 60_000);
});
