// Fault suite, a client with publish rights floods one oversized PUBLISH: over Redis's
// `client-output-buffer-limit pubsub` it disconnects every subscriber of the channel (here with a
// 1 MB limit, to keep the message small); with `proto-max-bulk-len` below that limit, as the README
// recommends, Redis refuses the PUBLISH itself, closes the publisher, and no subscriber notices.
import { Caller, Responder, type BufferLogger } from 'nestjs-redis-buffer';
import { rawRedis, sleep } from '../support/raw-redis.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { reportFault } from '../support/captured-logs.js';

const NS = 'flood';
const quiet: BufferLogger = { log: () => undefined, warn: () => undefined, error: () => undefined };

describe('one oversized PUBLISH', () => {
  let redis: TestRedis;

  beforeAll(async () => {
    redis = await startRedis(['--client-output-buffer-limit', 'pubsub 1mb 1mb 0'], { allowExternal: false });
  });

  afterAll(async () => {
    await redis?.stop();
  });

  it('disconnects the instances subscribed to the channel, unless proto-max-bulk-len refuses it first', async () => {
    const responder = new Responder({ redis: redis.url, namespace: NS, instanceId: 'victim' }, { logger: quiet }).handle('echo', (data) => data);
    const caller = new Caller({ redis: redis.url, namespace: NS, timeout: 3000 }, { logger: quiet });
    const attacker = rawRedis(redis.url);
    attacker.on('error', () => undefined);
    const admin = rawRedis(redis.url);
    const message = 'x'.repeat(2 * 1024 * 1024);
    try {
      await responder.listen();
      expect((await caller.gather('echo', 1)).replies).toHaveLength(1);

      // Redis's default: the 2 MB message is queued to the instance, over its 1 MB limit.
      expect(await attacker.publish(`${NS}:req:echo`, message)).toBe(1);
      for (const deadline = Date.now() + 5000; responder.stats.reconnects === 0 && Date.now() < deadline; ) await sleep(20);
      const reconnectsWithoutBulkLimit = responder.stats.reconnects;
      expect(reconnectsWithoutBulkLimit).toBe(1);
      for (const deadline = Date.now() + 5000; responder.connectionStatus !== 'connected' && Date.now() < deadline; ) await sleep(20);

      // With proto-max-bulk-len below the limit, the same PUBLISH never reaches a subscriber.
      await admin.config('SET', 'proto-max-bulk-len', '1mb');
      await expect(attacker.publish(`${NS}:req:echo`, message)).rejects.toThrow(/invalid bulk length|Connection is closed/);
      await sleep(300);
      expect(responder.stats.reconnects).toBe(1);
      expect(responder.connectionStatus).toBe('connected');
      const after = await caller.gather<number>('echo', 2);
      expect(after.completedBy).toBe('all');
      expect(after.replies.map((reply) => reply.data)).toEqual([2]);
      reportFault('oversized publish', { reconnectsWithoutBulkLimit, reconnectsWithBulkLimit: responder.stats.reconnects - reconnectsWithoutBulkLimit });
    } finally {
      await admin.config('SET', 'proto-max-bulk-len', '512mb').catch(() => undefined);
      attacker.disconnect();
      admin.disconnect();
      await caller.close();
      await responder.close();
    }
  }, 30_000);
});
