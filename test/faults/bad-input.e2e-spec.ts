// Fault suite: hostile and broken input on the request and reply channels, payload limits, and
// prototype pollution. The figures reported with TEST_LOGS=1 ("FAULT ...") are the ones in docs/reliability.md.
import { BufferClient, PayloadTooLargeError } from 'nestjs-redis-buffer';
import { lastValueFrom } from 'rxjs';
import { startInstances, stopAll, type InstanceProcess } from '../support/instances.js';
import { FAULT_APP, startLoads, totalErrors, type LoadProcess } from '../support/load.js';
import { collect, rawRedis, sleep } from '../support/raw-redis.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { quietLogs, reportFault } from '../support/captured-logs.js';
import { prng } from '../support/prng.js';


// The library's warnings that these faults provoke on purpose: captured and asserted, not printed.
const logs = quietLogs([/^Dropped a /, /similar messages suppressed/]);
const namespace = 'fault-bad';
const LIMIT = 65_536;
const FLOOD = 10_000;

/**
 * `count` bad messages for `channel`, each of which a receiver must reject exactly once: random
 * bytes, truncated envelopes, oversized messages, wrongly typed fields, random JSON values, and
 * envelopes of the wrong kind for the channel.
 */
function badMessages(count: number, seed: number, side: 'request' | 'reply'): Array<string | Buffer> {
  const random = prng(seed);
  const int = (n: number): number => Math.floor(random() * n);
  const valid =
    side === 'request'
      ? { v: 1, kind: 'request', id: 'r1', pattern: 'whoami', from: 'evil', replyTo: `${namespace}:inbox:nobody`, deadline: Date.now() + 60_000, headers: {}, data: 'x' }
      : { v: 1, kind: 'reply', id: 'r1', from: 'evil', seq: 0, done: true, data: 'x' };
  const wrongTypes: Array<Record<string, unknown>> = [
    { ...valid, v: 2 },
    { ...valid, v: '1' },
    { ...valid, id: 5 },
    { ...valid, id: '' },
    { ...valid, id: 'x'.repeat(500) },
    { ...valid, from: null },
    { ...valid, kind: 'nonsense' },
    side === 'request' ? { ...valid, deadline: 'tomorrow' } : { ...valid, seq: -1 },
    side === 'request' ? { ...valid, headers: ['a'] } : { ...valid, done: 'yes' },
    side === 'request' ? { ...valid, headers: JSON.parse('{"__proto__":"x"}') } : { ...valid, data: 1, error: 2 },
    side === 'request' ? { ...valid, replyTo: 42 } : { ...valid, done: false, data: undefined },
    // Right shape, wrong place: a reply on a request channel, a request on an inbox.
    side === 'request' ? { v: 1, kind: 'reply', id: 'r', from: 'e', seq: 0, done: true } : { ...valid, kind: 'request', pattern: 'p', replyTo: 'x', deadline: 1, headers: {} },
    side === 'request' ? { ...valid, pattern: 'not-this-channel' } : { v: 1, kind: 'event', id: 'e', pattern: 'p', from: 'e', headers: {}, data: 1 },
  ];
  const messages: Array<string | Buffer> = [];
  for (let i = 0; i < count; i++) {
    const kind = i % 50 === 49 ? 'oversized' : ['bytes', 'truncated', 'typed', 'json', 'batch'][i % 5]!;
    switch (kind) {
      case 'bytes': {
        const bytes = Buffer.alloc(1 + int(300));
        for (let b = 0; b < bytes.length; b++) bytes[b] = int(256);
        messages.push(bytes);
        break;
      }
      case 'truncated': {
        const json = JSON.stringify(valid);
        messages.push(json.slice(0, 1 + int(json.length - 2)));
        break;
      }
      case 'typed':
        messages.push(JSON.stringify(wrongTypes[int(wrongTypes.length)]));
        break;
      case 'json': {
        const values = [int(1e9), 'a string', null, true, [], [[1, 2]], { nested: { deep: [1, { x: null }] } }, -0.5, '{"v":1'];
        messages.push(JSON.stringify(values[int(values.length)]));
        break;
      }
      case 'batch':
        // A batch whose only element is bad: one rejection, like every other message here.
        messages.push(JSON.stringify([wrongTypes[int(wrongTypes.length)]]));
        break;
      case 'oversized':
        messages.push(JSON.stringify({ ...valid, data: 'y'.repeat(LIMIT + 2048) }));
        break;
    }
  }
  return messages;
}

async function publishAll(url: string, channel: string, messages: ReadonlyArray<string | Buffer>): Promise<void> {
  const publisher = rawRedis(url);
  try {
    for (let start = 0; start < messages.length; start += 500) {
      const pipeline = publisher.pipeline();
      for (const message of messages.slice(start, start + 500)) pipeline.publish(channel, message);
      await pipeline.exec();
    }
  } finally {
    await publisher.quit();
  }
}

describe('fault: bad input', () => {
  let redis: TestRedis;
  let instances: InstanceProcess[];
  let client: BufferClient;

  beforeAll(async () => {
    redis = await startRedis();
    instances = await startInstances(
      ['b1', 'b2'].map((instanceId) => ({ instanceId, redisUrl: redis.url, namespace, script: FAULT_APP, env: { MAX_PAYLOAD_BYTES: String(LIMIT) } })),
    );
    client = new BufferClient({ redis: redis.url, namespace, instanceId: 'victim', maxPayloadBytes: LIMIT, maxBatchBytes: LIMIT, timeout: 3000 });
    await client.connect();
  }, 60_000);

  afterAll(async () => {
    await client?.close();
    await stopAll(instances ?? []);
    await redis?.stop();
  });

  async function stats(to: string): Promise<Record<string, number>> {
    return (await client.gather<Record<string, number>>('stats', null, { to })).replies[0]!.data;
  }

  it(`${FLOOD} malformed, truncated, oversized, wrongly typed and random messages on request and reply channels: each counted, logs bounded, real traffic unaffected`, async () => {
    let loads: LoadProcess[] = await startLoads([
      { id: 'bad-load-1', redisUrl: redis.url, namespace, timeout: 3000, concurrency: 4 },
      { id: 'bad-load-2', redisUrl: redis.url, namespace, timeout: 3000, concurrency: 4 },
    ]);
    try {
      await Promise.all(loads.map((load) => load.until((s) => s.ok >= 50, 10_000, '50 successes')));
      const before = await Promise.all(['b1', 'b2'].map(stats));
      const clientBefore = client.stats.malformedMessages;
      const admin = rawRedis(redis.url);
      const [inbox] = (await admin.pubsub('CHANNELS', `${namespace}:inbox:victim.*`)) as string[];
      admin.disconnect();
      expect(inbox).toBeDefined();

      const started = Date.now();
      await Promise.all([
        publishAll(redis.url, `${namespace}:req:whoami`, badMessages(FLOOD, 1, 'request')),
        publishAll(redis.url, inbox!, badMessages(FLOOD, 2, 'reply')),
      ]);
      // Every bad message reached its receiver and was counted, once.
      let after = before;
      for (let deadline = Date.now() + 20_000; Date.now() < deadline; await sleep(50)) {
        after = await Promise.all(['b1', 'b2'].map(stats));
        if (after.every((s, i) => s.malformedMessages - before[i]!.malformedMessages >= FLOOD) && client.stats.malformedMessages - clientBefore >= FLOOD) break;
      }
      const floodMs = Date.now() - started;
      for (const [i, s] of after.entries()) expect(s.malformedMessages - before[i]!.malformedMessages).toBe(FLOOD);
      expect(client.stats.malformedMessages - clientBefore).toBe(FLOOD);
      // The client logged the flood on its inbox, bounded: 10 lines per kind per 10 s, then a summary.
      const dropped = logs.warnings();
      expect(dropped.some((message) => message.startsWith(`Dropped a malformed message on "${inbox!}"`))).toBe(true);
      expect(dropped.length).toBeLessThanOrEqual(22);

      // Real traffic went on, and nothing crashed.
      const okAtFlood = loads.map((load) => load.stats.ok);
      await Promise.all(loads.map((load, i) => load.until((s) => s.ok > okAtFlood[i]! + 20, 5000, 'more successes')));
      const finals = await Promise.all(loads.map((load) => load.stop()));
      loads = [];
      expect(totalErrors(finals)).toEqual({});
      for (const final of finals) expect(final.unhandledRejections + final.uncaughtExceptions).toBe(0);
      for (const instance of instances) {
        expect(instance.exited).toBe(false);
        expect(instance.logs).not.toContain('UNHANDLED_REJECTION');
        // Bounded logging: 10 lines per 10 s, then one "suppressed" summary line.
        const lines = instance.logs.split('\n').filter((line) => line.includes('Dropped'));
        expect(lines.length).toBeLessThanOrEqual(12);
      }
      const result = await client.gather<string>('whoami', null);
      expect(result.replies.map((r) => r.data).sort()).toEqual(['b1', 'b2']);
      reportFault('bad-input', {
        messagesPerSide: FLOOD,
        countedPerInstance: after.map((s, i) => s.malformedMessages - before[i]!.malformedMessages),
        countedByClient: client.stats.malformedMessages - clientBefore,
        floodMs,
        logLinesPerInstance: instances.map((instance) => instance.logs.split('\n').filter((line) => line.includes('Dropped')).length),
        loadRequests: finals.reduce((sum, f) => sum + f.sent, 0),
        loadErrors: totalErrors(finals),
      });
    } finally {
      for (const load of loads) await load.stop();
    }
  }, 90_000);

  it('a request over maxPayloadBytes is refused before publishing, for requests and events', async () => {
    const listener = await collect(redis.url, `${namespace}:req:echo`);
    const events = await collect(redis.url, `${namespace}:evt:anything`);
    const small = new BufferClient({ redis: redis.url, namespace, maxPayloadBytes: 4096, maxBatchBytes: 4096 });
    try {
      const error = await small.gather('echo', 'x'.repeat(5000)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PayloadTooLargeError);
      expect((error as PayloadTooLargeError).code).toBe('BUFFER_PAYLOAD_TOO_LARGE');
      expect((error as PayloadTooLargeError).message).toContain('maxPayloadBytes');
      await expect(lastValueFrom(small.emit('anything', 'x'.repeat(5000)))).rejects.toBeInstanceOf(PayloadTooLargeError);
      // Multi-byte characters are counted in bytes: 1,500 x "€" is 4,500 bytes.
      await expect(small.gather('echo', '€'.repeat(1500))).rejects.toBeInstanceOf(PayloadTooLargeError);
      // (the raw listener counts as a receiver that never answers, hence the short timeout)
      const fits = await small.gather('echo', 'x'.repeat(3000), { timeout: 500 });
      expect(fits.replies).toHaveLength(2);
      await sleep(100);
      expect(listener.messages).toHaveLength(1); // only the request that fits
      expect(events.messages).toHaveLength(0);
    } finally {
      await small.close();
      await listener.close();
      await events.close();
    }
  }, 20_000);

  it('a reply over the instance limit is replaced by a typed error reply; nothing oversized is published', async () => {
    const admin = rawRedis(redis.url);
    const [inbox] = (await admin.pubsub('CHANNELS', `${namespace}:inbox:victim.*`)) as string[];
    admin.disconnect();
    const listener = await collect(redis.url, inbox!);
    try {
      const result = await client.gather('big', LIMIT + 1);
      expect(result.completedBy).toBe('all');
      expect(result.errors).toHaveLength(2);
      for (const reply of result.errors) expect(reply.error).toMatchObject({ code: 'BUFFER_REPLY_TOO_LARGE', message: expect.stringContaining('maxPayloadBytes') });
      const ok = await client.gather<string>('big', LIMIT - 200);
      expect(ok.replies).toHaveLength(2);
      await sleep(100);
      expect(Math.max(...listener.messages.map((m) => m.length))).toBeLessThan(LIMIT + 1024);
    } finally {
      await listener.close();
    }
  });

  it('JSON with __proto__ and constructor keys pollutes nothing, on either side', async () => {
    const hostile = JSON.parse('{"__proto__":{"polluted":true},"constructor":{"prototype":{"isAdmin":true}},"a":1}') as object;
    const result = await client.gather<{ polluted: boolean; protoOfPayload: boolean; ownKeys: string[] }>('pollution', hostile);
    for (const reply of result.replies) {
      expect(reply.data.polluted).toBe(false);
      expect(reply.data.protoOfPayload).toBe(true);
      expect(reply.data.ownKeys.sort()).toEqual(['__proto__', 'a', 'constructor']);
    }
    const echoed = await client.gather<Record<string, unknown>>('echo', hostile);
    for (const reply of echoed.replies) {
      expect(Object.getPrototypeOf(reply.data)).toBe(Object.prototype);
      expect(Object.keys(reply.data).sort()).toEqual(['__proto__', 'a', 'constructor']);
    }
    // Hostile keys at the top of an envelope, by hand: the instance answers, nothing is polluted.
    const listener = await collect(redis.url, `${namespace}:inbox:by-hand`);
    const publisher = rawRedis(redis.url);
    try {
      await publisher.publish(
        `${namespace}:req:pollution`,
        `{"__proto__":{"polluted":true},"constructor":{"prototype":{"isAdmin":true}},"v":1,"kind":"request","id":"h1","pattern":"pollution","from":"cli","replyTo":"${namespace}:inbox:by-hand","deadline":${Date.now() + 5000},"headers":{},"data":null}`,
      );
      for (let deadline = Date.now() + 3000; listener.messages.length < 2 && Date.now() < deadline; ) await sleep(20);
      expect(listener.messages).toHaveLength(2);
      for (const message of listener.messages) expect(JSON.parse(message)).toMatchObject({ kind: 'reply', data: { polluted: false } });
    } finally {
      await publisher.quit();
      await listener.close();
    }
    const probe: Record<string, unknown> = {};
    expect(probe.polluted).toBeUndefined();
    expect(probe.isAdmin).toBeUndefined();
  });
});
