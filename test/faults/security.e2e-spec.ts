// Fault suite, security: Redis AUTH (password and an ACL user confined to the namespace), namespace
// isolation, and message signing against forged requests and replies (published with plain ioredis
// and with redis-cli). TLS: tls.e2e-spec.ts; every ACL permission one by one: permissions.e2e-spec.ts.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { BufferClient, ConnectionLostError, MessageSigner, RedisPermissionError } from 'nestjs-redis-buffer';
import { Redis } from 'ioredis';
import { lastValueFrom } from 'rxjs';
import { startInstances, stopAll, type InstanceProcess } from '../support/instances.js';
import { FAULT_APP } from '../support/load.js';
import { collect, rawRedis, requestsIn, sleep } from '../support/raw-redis.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { quietLogs, reportFault } from '../support/captured-logs.js';


// The library's warnings that these faults provoke on purpose: captured and asserted, not printed.
const logs = quietLogs([/^Redis: WRONGPASS/, /^Dropped (an unsigned|a forged|a signed) message/, /similar messages suppressed/]);
const KEY = 'fault-suite-shared-signing-key-0123456789';


describe('security: Redis AUTH', () => {
  let redis: TestRedis;
  let instances: InstanceProcess[] = [];
  const namespace = 'fault-sec';

  beforeAll(async () => {
    redis = await startRedis(['--requirepass', 'admin-pw']);
    const admin = rawRedis(`redis://:admin-pw@127.0.0.1:${redis.port}`);
    // The README's rule for a process that is both an instance and a caller: this namespace's channels, the commands an instance sends.
    await admin.call('ACL', 'SETUSER', 'svc', 'on', '>svc-pw', 'resetchannels', `&${namespace}:*`, '-@all', '+publish', '+subscribe', '+unsubscribe', '+pubsub|numsub', '+ping');
    await admin.quit();
  });

  afterAll(async () => {
    await stopAll(instances);
    await redis?.stop();
  });

  it('with a password: instances and clients work; a wrong password fails with ConnectionLostError by connectTimeout', async () => {
    const url = `redis://:admin-pw@127.0.0.1:${redis.port}`;
    instances = await startInstances([{ instanceId: 'pw1', redisUrl: url, namespace: 'fault-pw', script: FAULT_APP }]);
    const client = new BufferClient({ redis: url, namespace: 'fault-pw' });
    const wrong = new BufferClient({ redis: `redis://:nope@127.0.0.1:${redis.port}`, namespace: 'fault-pw', connectTimeout: 1000 });
    try {
      expect((await client.gather('whoami', null)).replies.map((r) => r.data)).toEqual(['pw1']);
      const started = Date.now();
      const error = await wrong.connect().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConnectionLostError);
      expect((error as Error).message).not.toContain('nope');
      expect(Date.now() - started).toBeLessThan(1000 + 500);
      expect(logs.warnings().some((message) => message.startsWith('Redis: WRONGPASS'))).toBe(true);
    } finally {
      await client.close();
      await wrong.close();
      await stopAll(instances);
      instances = [];
    }
  }, 30_000);

  it('with an ACL user restricted to &<namespace>:*: its own namespace works, any other channel is refused by Redis', async () => {
    const url = `redis://svc:svc-pw@127.0.0.1:${redis.port}`;
    instances = await startInstances([{ instanceId: 'acl1', redisUrl: url, namespace, script: FAULT_APP }]);
    const client = new BufferClient({ redis: url, namespace });
    const outside = new BufferClient({ redis: url, namespace: 'someone-else', connectTimeout: 1000 });
    // Without ioredis's ready check: it runs INFO, which this user may not.
    const raw = new Redis(url, { enableReadyCheck: false, maxRetriesPerRequest: 1 });
    try {
      expect((await client.gather('whoami', null)).replies.map((r) => r.data)).toEqual(['acl1']);
      await lastValueFrom(client.emit('anything', 1));
      await expect(raw.publish('someone-else:req:whoami', 'x')).rejects.toThrow(/NOPERM/);
      await expect(raw.call('KEYS', '*')).rejects.toThrow(/NOPERM/);
      // A client configured for another namespace cannot use its channels there: a typed error
      // naming the rule to add (regression: the raw ioredis NOPERM error used to escape untyped).
      const error = await outside.connect().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RedisPermissionError);
      expect((error as RedisPermissionError).code).toBe('BUFFER_REDIS_PERMISSION');
      expect((error as Error).message).toContain('ACL SETUSER <user> &someone-else:*');
      await expect(outside.gather('whoami', null)).rejects.toBeInstanceOf(RedisPermissionError);
    } finally {
      raw.disconnect();
      await client.close();
      await outside.close();
      await stopAll(instances);
      instances = [];
    }
  }, 30_000);
});

describe('security: namespaces and signing', () => {
  let redis: TestRedis;
  let instances: InstanceProcess[];

  beforeAll(async () => {
    redis = await startRedis();
    instances = await startInstances([
      { instanceId: 'na1', redisUrl: redis.url, namespace: 'ns-a', script: FAULT_APP },
      { instanceId: 'nb1', redisUrl: redis.url, namespace: 'ns-b', script: FAULT_APP },
      { instanceId: 'sg1', redisUrl: redis.url, namespace: 'signed', script: FAULT_APP, env: { SIGNING_KEY: KEY } },
      { instanceId: 'sg2', redisUrl: redis.url, namespace: 'signed', script: FAULT_APP, env: { SIGNING_KEY: KEY } },
    ]);
  }, 60_000);

  afterAll(async () => {
    await stopAll(instances ?? []);
    await redis?.stop();
  });

  it("two namespaces on one Redis never see each other's traffic", async () => {
    const spy = rawRedis(redis.url);
    const seenByB: string[] = [];
    spy.on('pmessage', (_pattern: string, channel: string) => seenByB.push(channel));
    await spy.psubscribe('ns-b:*');
    const a = new BufferClient({ redis: redis.url, namespace: 'ns-a' });
    try {
      for (let i = 0; i < 20; i++) {
        const result = await a.gather<string>('whoami', null);
        expect(result.expected).toBe(1);
        expect(result.replies.map((r) => r.data)).toEqual(['na1']);
      }
      await lastValueFrom(a.emit('cache.invalidate', 'k'));
      await sleep(100);
      expect(seenByB).toEqual([]);
    } finally {
      await a.close();
      await spy.quit();
    }
  });

  it('with signingKey: signed traffic flows; unsigned and forged requests are ignored and counted; forged replies (ioredis and redis-cli) are ignored and counted', async () => {
    const signed = new BufferClient({ redis: redis.url, namespace: 'signed', signingKey: KEY, timeout: 2000 });
    const unsigned = new BufferClient({ redis: redis.url, namespace: 'signed', timeout: 500 });
    const wrongKey = new BufferClient({ redis: redis.url, namespace: 'signed', signingKey: 'not-the-shared-key-at-all', timeout: 500 });
    const forger = rawRedis(redis.url);
    const spy = rawRedis(redis.url);
    const stats = async (to: string) => (await signed.gather<Record<string, number>>('stats', null, { to })).replies[0]!.data;
    try {
      const ok = await signed.gather<string>('whoami', null);
      expect(ok.replies.map((r) => r.data).sort()).toEqual(['sg1', 'sg2']);
      const before = await Promise.all(['sg1', 'sg2'].map(stats));

      // Requests without the key: delivered by Redis, ignored by the instances.
      for (const client of [unsigned, wrongKey]) {
        const result = await client.gather('whoami', null);
        expect(result.completedBy).toBe('timeout');
        expect(result.expected).toBe(2);
        expect(result.replies).toHaveLength(0);
      }
      // Forged by hand: unsigned, and wrapped with a made-up signature; no reply ever comes.
      const answers = await collect(redis.url, 'signed:inbox:forger');
      const request = JSON.stringify({ v: 1, kind: 'request', id: 'f1', pattern: 'whoami', from: 'mallory', replyTo: 'signed:inbox:forger', deadline: Date.now() + 5000, headers: {}, data: null });
      await forger.publish('signed:req:whoami', request);
      await forger.publish('signed:req:whoami', `{"v":1,"kind":"signed","sig":"${'ab'.repeat(32)}","src":"mallory","seq":0,"at":${Date.now()},"body":${request}}`);
      // A genuine signed request replayed onto another channel fails too (the channel is signed).
      await forger.publish('signed:req:stats', new MessageSigner(KEY).seal('signed:req:whoami', request));
      await sleep(200);
      expect(answers.messages).toEqual([]);
      await answers.close();
      const after = await Promise.all(['sg1', 'sg2'].map(stats));
      // Each client's request and its `who` (membership) from the two clients without the key, and the three by hand.
      for (const [i, s] of after.entries()) expect(s.forgedMessages - before[i]!.forgedMessages).toBe(2 + 2 + 3);

      // Forged replies: a spy reads the signed request (signing is not encryption), then answers first.
      let seen: { id: string; replyTo: string } | undefined;
      spy.on('message', (_channel: string, message: string) => {
        const [body] = requestsIn(JSON.parse(message).body) as Array<{ id: string; replyTo: string }>;
        seen ??= { id: body!.id, replyTo: body!.replyTo };
      });
      await spy.subscribe('signed:req:slow');
      const forgedBefore = signed.stats.forgedMessages;
      const pending = signed.gather<string>('slow', 600, { timeout: 3000 });
      for (let deadline = Date.now() + 2000; seen === undefined && Date.now() < deadline; ) await sleep(5);
      expect(seen).toBeDefined();
      const forgedReply = (from: string) => JSON.stringify({ v: 1, kind: 'reply', id: seen!.id, from, seq: 0, done: true, data: 'forged' });
      await forger.publish(seen!.replyTo, forgedReply('mallory-ioredis'));
      await forger.publish(seen!.replyTo, new MessageSigner('a-key-mallory-made-up-herself').seal(seen!.replyTo, forgedReply('mallory-wrong-key')));
      await promisify(execFile)('redis-cli', ['-p', String(redis.port), 'PUBLISH', seen!.replyTo, forgedReply('mallory-redis-cli')]);
      const result = await pending;
      // The spy is a subscriber too: Redis counts it, it never sends a signed reply, so the result is partial.
      expect(result.replies.map((r) => r.data).sort()).toEqual(['sg1', 'sg2']);
      expect(result.replies.every((r) => !r.instanceId.startsWith('mallory'))).toBe(true);
      expect(signed.stats.forgedMessages - forgedBefore).toBe(3);
      expect(logs.warnings().some((message) => message.startsWith('Dropped a forged message'))).toBe(true);
      reportFault('signing', {
        forgedRequestsCountedPerInstance: after.map((s, i) => s.forgedMessages - before[i]!.forgedMessages),
        forgedRepliesCountedByClient: signed.stats.forgedMessages - forgedBefore,
        repliesAccepted: result.replies.map((r) => r.instanceId),
      });
    } finally {
      await signed.close();
      await unsigned.close();
      await wrongKey.close();
      await forger.quit();
      await spy.quit();
    }
  }, 30_000);
});
