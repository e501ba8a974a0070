// Durable handlers in a real Nest app (its own process): guards, pipes, interceptors, filters,
// Observable handlers, the context, and pub/sub beside durable on the same pattern name.
import { BufferClient, type DeadLetter } from 'nestjs-redis-buffer';
import type { Redis } from 'ioredis';
import { startInstances, stopAll, type InstanceProcess } from '../support/instances.js';
import { rawRedis, sleep } from '../support/raw-redis.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { DURABLE_APP, records, waitFor } from '../support/durable.js';

const namespace = 'dnest';
const DURABLE = { claimIdle: 1000, claimInterval: 200, retryDelay: 20, maxRetryDelay: 50 };

describe('durable handlers in a Nest app', () => {
  let redis: TestRedis;
  let raw: Redis;
  let instances: InstanceProcess[];
  let client: BufferClient;

  beforeAll(async () => {
    redis = await startRedis();
    raw = rawRedis(redis.url);
    instances = await startInstances([{ instanceId: 'n1', redisUrl: redis.url, namespace, script: DURABLE_APP, env: { GROUPS: 'a,nest', DURABLE: JSON.stringify(DURABLE) } }]);
    client = new BufferClient({ redis: redis.url, namespace, timeout: 2000, durable: DURABLE });
  });

  afterAll(async () => {
    await client?.close();
    await stopAll(instances ?? []);
    raw?.disconnect();
    await redis?.stop();
  });

  const nest = (): Promise<Array<Record<string, unknown>>> => records(raw, namespace, 'nest');
  async function deadLetterOf(pattern: string, entryId: string): Promise<DeadLetter> {
    let found: DeadLetter | undefined;
    await waitFor(`the dead letter of ${pattern}`, async () => {
      found = (await client.durable.deadLetters(pattern, 'nest')).find((d) => d.entryId === entryId);
      return found !== undefined;
    });
    return found!;
  }

  it('runs guards: a refused entry is retried, then dead-lettered with the guard\'s RpcException payload; an allowed one runs', async () => {
    const refused = await client.durable.publish('guarded', 'no');
    await client.durable.publish('guarded', 'yes', { headers: { 'x-allow': 'yes' } });
    const dead = await deadLetterOf('guarded', refused);
    expect(dead).toMatchObject({ attempts: 2, error: { code: 'FORBIDDEN', entryId: refused } });
    await waitFor('the allowed entry', async () => (await nest()).some((r) => r.handler === 'guarded'));
    expect((await nest()).filter((r) => r.handler === 'guarded').map((r) => r.value)).toEqual(['yes']);
  }, 30_000);

  it('runs pipes: a payload the pipe refuses never reaches the handler and is dead-lettered', async () => {
    await client.durable.publish('piped', '21');
    const refused = await client.durable.publish('piped', 'abc');
    const dead = await deadLetterOf('piped', refused);
    expect(dead.attempts).toBe(1);
    expect(dead.entry).toMatchObject({ data: 'abc' });
    expect((await nest()).filter((r) => r.handler === 'piped').map((r) => r.value)).toEqual([42]);
  }, 30_000);

  it('runs interceptors around the handler', async () => {
    const id = await client.durable.publish('intercepted', 7);
    await waitFor('both interceptor phases', async () => (await records(raw, namespace, 'intercepted')).filter((r) => r.entryId === id).length === 2);
    expect((await records(raw, namespace, 'intercepted')).map((r) => r.phase)).toEqual(['before', 'after']);
  }, 30_000);

  it('runs exception filters: the dead letter keeps what the filter made of the error', async () => {
    const id = await client.durable.publish('filtered', null);
    expect((await deadLetterOf('filtered', id)).error).toEqual({ filtered: true, message: 'to be filtered' });
  }, 30_000);

  it('keeps an RpcException payload intact in the dead letter', async () => {
    const id = await client.durable.publish('rpc.fail', null);
    expect(await deadLetterOf('rpc.fail', id)).toMatchObject({ attempts: 2, error: { code: 'E_CUSTOM', detail: { nested: [1, 2, 3] } } });
  }, 30_000);

  it('records a plain Error as Nest\'s exception filter renders it (throw RpcException to keep details)', async () => {
    const id = await client.durable.publish('plain.fail', null);
    expect((await deadLetterOf('plain.fail', id)).error).toEqual({ status: 'error', message: 'Internal server error' });
  }, 30_000);

  it('acknowledges an Observable handler when its stream completes, and retries when it errors', async () => {
    await client.durable.publish('observable', true);
    await waitFor('the second attempt to complete', async () => (await nest()).filter((r) => r.handler === 'observable' && r.attempt === 2).length === 3);
    const runs = (await nest()).filter((r) => r.handler === 'observable').map((r) => `${String(r.attempt)}:${String(r.n)}`);
    expect(runs).toEqual(['1:0', '1:1', '2:0', '2:1', '2:2']);
  }, 30_000);

  it('gives the handler a DurableContext', async () => {
    const before = Date.now();
    const id = await client.durable.publish('ctx', null, { key: 'k-1', idempotencyKey: 'i-1', headers: { 'x-tenant': 't1' } });
    await waitFor('the ctx record', async () => (await nest()).some((r) => r.handler === 'ctx'));
    const ctx = (await nest()).find((r) => r.handler === 'ctx')!;
    expect(ctx).toMatchObject({
      entryId: id,
      pattern: 'ctx',
      group: 'nest',
      attempt: 1,
      maxAttempts: 5,
      key: 'k-1',
      idempotencyKey: 'i-1',
      headers: { 'x-tenant': 't1' },
      senderId: client.instanceId,
      instanceId: 'n1',
    });
    expect(ctx.publishedAt).toBeGreaterThanOrEqual(before);
  }, 30_000);

  it('keeps pub/sub and durable apart on the same pattern name', async () => {
    const result = await client.gather<string>('job', null);
    expect(result.replies.map((r) => r.data)).toEqual(['pubsub:n1']);
    const id = await client.durable.publish('job', { n: 1 });
    await waitFor('the durable job', async () => (await records(raw, namespace, 'handled')).some((r) => r.entryId === id));
    await sleep(100);
    expect(await records(raw, namespace, 'handled')).toHaveLength(1);
    const stats = await client.gather<Record<string, number>>('durable.stats', null);
    expect(stats.replies[0]!.data).toMatchObject({ handled: expect.any(Number), holding: 0 });
  }, 30_000);
});
