// Nest and plain Node side by side: Nest instances (instance-app) and plain-Node instances
// (plain-instance, the core Responder without Nest) in separate processes on one namespace, asked
// by a Nest BufferClient and by the plain Caller.
import { join } from 'node:path';
import { BufferClient, Caller } from 'nestjs-redis-buffer';
import { lastValueFrom, toArray } from 'rxjs';
import { FIXTURE_APP, InstanceProcess, startInstances, stopAll } from '../support/instances.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { quietLogs } from '../support/captured-logs.js';

const PLAIN_APP = join(FIXTURE_APP, '..', 'plain-instance.js');
const namespace = 'plain-mix';
const NEST = ['nest-1', 'nest-2'];
const PLAIN = ['plain-1', 'plain-2'];
const ALL = [...NEST, ...PLAIN].sort();

describe('a Nest caller and a plain caller, with Nest and plain-Node instances', () => {
  quietLogs([]);
  let redis: TestRedis;
  let client: BufferClient;
  let caller: Caller;
  let instances: InstanceProcess[];

  beforeAll(async () => {
    redis = await startRedis();
    instances = await startInstances([
      { instanceId: 'nest-1', redisUrl: '', namespace, resources: ['a'] },
      { instanceId: 'nest-2', redisUrl: '', namespace, resources: ['b', 'c'] },
      { instanceId: 'plain-1', redisUrl: '', namespace, resources: ['d'], script: PLAIN_APP },
      { instanceId: 'plain-2', redisUrl: '', namespace, resources: [], script: PLAIN_APP },
    ].map((spec) => ({ ...spec, redisUrl: redis.url })));
    client = new BufferClient({ redis: redis.url, namespace, instanceId: 'nest-caller', timeout: 5000 });
    caller = new Caller({ redis: redis.url, namespace, instanceId: 'plain-caller', timeout: 5000 }, { logger: { log: () => undefined, warn: () => undefined, error: () => undefined } });
    await Promise.all([client.connect(), caller.connect()]);
  });

  afterAll(async () => {
    await client?.close();
    await caller?.close();
    await stopAll(instances ?? []);
    await redis?.stop();
  });

  const ids = (replies: ReadonlyArray<{ instanceId: string }>): string[] => replies.map((reply) => reply.instanceId).sort();

  it('a Nest caller gathers one reply from every instance, Nest and plain alike, and completes by "all"', async () => {
    const result = await client.gather<string>('whoami', null);
    expect(result).toMatchObject({ completedBy: 'all', expected: 4, finished: 4, missing: [] });
    expect(ids(result.replies)).toEqual(ALL);
    for (const reply of result.replies) expect(reply.data).toBe(reply.instanceId);
    const counts = await client.gather<number>('count', null);
    expect(Object.fromEntries(counts.replies.map((reply) => [reply.instanceId, reply.data]))).toEqual({ 'nest-1': 1, 'nest-2': 2, 'plain-1': 1, 'plain-2': 0 });
    const found = await client.gather<{ owner: string } | null>('resource.find', 'd');
    expect(found.replies.filter((reply) => reply.data !== null).map((reply) => reply.data)).toEqual([{ id: 'd', owner: 'plain-1' }]);
  });

  it('streams and errors from both kinds of instance arrive the same way', async () => {
    const streamed = await client.gather<{ instance: string; n: number }>('stream', 3);
    expect(streamed).toMatchObject({ completedBy: 'all', expected: 4 });
    for (const id of ALL) expect(streamed.replies.filter((reply) => reply.instanceId === id).map((reply) => reply.data.n)).toEqual([0, 1, 2]);
    const failed = await client.gather('fail', null);
    expect(failed).toMatchObject({ completedBy: 'all', expected: 4, finished: 4, replies: [] });
    expect(ids(failed.errors)).toEqual(ALL);
    for (const reply of failed.errors) {
      // A plain instance sends the thrown error as it is; Nest's default exception filter answers
      // an Error that is not an RpcException with "Internal server error".
      const message = PLAIN.includes(reply.instanceId) ? `boom from ${reply.instanceId}` : 'Internal server error';
      expect(reply.error).toMatchObject({ message });
    }
  });

  it('refusals: a direct request for a pattern an instance lacks is refused by either kind, and a pattern only plain instances serve reaches only them', async () => {
    const nestLacks = await client.gather('plain.only', null, { to: 'nest-1' });
    expect(nestLacks.errors).toEqual([expect.objectContaining({ instanceId: 'nest-1', refused: true, error: expect.objectContaining({ code: 'BUFFER_NO_HANDLER' }) })]);
    const plainLacks = await client.gather('guarded', null, { to: 'plain-2' });
    expect(plainLacks.errors).toEqual([expect.objectContaining({ instanceId: 'plain-2', refused: true, error: expect.objectContaining({ code: 'BUFFER_NO_HANDLER' }) })]);
    const plainOnly = await client.gather<string>('plain.only', null);
    expect(plainOnly).toMatchObject({ completedBy: 'all', expected: 2, missing: [] });
    expect(ids(plainOnly.replies)).toEqual(PLAIN);
  });

  it('a plain handler gets the same context as a Nest one: request id, sender, headers, deadline', async () => {
    const result = await client.gather<Record<string, unknown>>('ctx', null, { headers: { 'x-tenant': 't1' } });
    expect(ids(result.replies)).toEqual(ALL);
    for (const { instanceId, data } of result.replies) {
      expect(data).toMatchObject({ senderId: 'nest-caller', instanceId, headers: { 'x-tenant': 't1' }, pattern: 'ctx' });
      expect(typeof data.requestId).toBe('string');
      expect(typeof data.deadline).toBe('number');
    }
  });

  it('events reach the event handlers of both kinds', async () => {
    expect(await lastValueFrom(client.emit('cache.invalidate', 'k1'))).toBe(4);
    expect(await caller.emit('cache.invalidate', 'k2')).toBe(4);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const seen = await client.gather<string[]>('events.seen', null);
    for (const reply of seen.replies) {
      expect(reply.data).toEqual(expect.arrayContaining(['k1@nest-caller', 'k2@plain-caller']));
    }
    expect(ids(seen.replies)).toEqual(ALL);
  });

  it('a plain-Node caller gathers from Nest and plain instances, sends, scatters and lists them', async () => {
    const result = await caller.gather<string>('whoami', null);
    expect(result).toMatchObject({ completedBy: 'all', expected: 4, finished: 4, missing: [] });
    expect(ids(result.replies)).toEqual(ALL);
    const nestOnly = await caller.gather<string>('whoami', null, { to: 'nest-2' });
    expect(nestOnly.replies.map((reply) => reply.data)).toEqual(['nest-2']);
    expect((await lastValueFrom(caller.send<string>('whoami', null).pipe(toArray()))).sort()).toEqual(ALL);
    expect(ids(await lastValueFrom(caller.scatter('count', null).pipe(toArray())))).toEqual(ALL);
    const listed = await caller.instances();
    expect(listed.map((info) => info.instanceId)).toEqual(ALL);
    expect(listed.find((info) => info.instanceId === 'plain-1')!.patterns).toContain('plain.only');
    expect(listed.find((info) => info.instanceId === 'nest-1')!.patterns).toContain('guarded');
  });

  it('a plain instance stopped with SIGTERM drains: the request it had is answered, and later gathers no longer wait for it', async () => {
    const plain2 = instances.find((instance) => instance.id === 'plain-2')!;
    const inFlight = client.gather<string>('slow', 400, { to: 'plain-2' });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const stopped = plain2.stop('SIGTERM');
    expect((await inFlight).replies.map((reply) => reply.data)).toEqual(['plain-2']);
    expect(await stopped).toBe(0);
    const after = await client.gather<string>('whoami', null);
    expect(after).toMatchObject({ completedBy: 'all', expected: 3, missing: [] });
    expect(ids(after.replies)).toEqual(ALL.filter((id) => id !== 'plain-2'));
  });
});
