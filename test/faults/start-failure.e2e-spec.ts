// Fault suite: a start-up that fails after the instance subscribed. Its command connection is cut
// (a real TCP proxy destroys it) while it checks, a second time, that no other process holds its
// id. `listen()` must end (no command waits forever for a connection that closed) and the instance
// must not stay a receiver: Redis would count it for every request on its patterns, and nobody
// would ever answer for it (a zombie that makes every gather wait for its deadline and keeps its
// own id taken for the next start).
import { Caller, ConnectionLostError, NoRespondersError, Responder } from 'nestjs-redis-buffer';
import { LatencyProxy } from '../support/latency-proxy.js';
import { rawRedis, sleep } from '../support/raw-redis.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';

const namespace = 'startfail';
const PATTERN = 'start.probe';
const quiet = { log() {}, warn() {}, error() {} };

describe('fault: a start-up that fails after subscribing', () => {
  let redis: TestRedis;
  let proxy: LatencyProxy;

  beforeAll(async () => {
    redis = await startRedis();
    proxy = await LatencyProxy.start({ host: '127.0.0.1', port: redis.port }, 0);
  }, 30_000);

  afterAll(async () => {
    await proxy?.stop();
    await redis?.stop();
  });

  it('rejects, leaves no subscription behind, and the same id starts again at once', async () => {
    const admin = rawRedis(redis.url);
    const caller = new Caller({ redis: redis.url, namespace, timeout: 3000 }, { logger: quiet });
    try {
      await caller.connect();
      // The instance's work channels are subscribed in one SUBSCRIBE; the PUBSUB NUMSUB after it
      // is the second uniqueness check, the last step before it listens.
      const cut = proxy.cutOnce(/subscribe[\s\S]*:req:/i, /numsub/i);
      const failing = new Responder({ redis: proxy.url, namespace, instanceId: 'starter', connectTimeout: 2000 }, { logger: quiet }).handle(PATTERN, () => 'zombie');
      const outcome = await Promise.race([
        failing.listen().then(
          () => 'listening',
          (error: unknown) => error,
        ),
        sleep(10_000).then(() => 'still waiting after 10 s'),
      ]);
      await cut;
      expect(outcome).toBeInstanceOf(ConnectionLostError);
      expect(failing.state).toBe('closed');

      // Long enough for ioredis to have reconnected and subscribed again, had anything been left open.
      await sleep(1500);
      const [, requestSubscribers, , directSubscribers] = (await admin.call('PUBSUB', 'NUMSUB', `${namespace}:req:${PATTERN}`, `${namespace}:direct:starter`)) as [string, number, string, number];
      expect({ requestSubscribers: Number(requestSubscribers), directSubscribers: Number(directSubscribers) }).toEqual({ requestSubscribers: 0, directSubscribers: 0 });

      // Nobody is counted for the pattern: a gather fails at once rather than waiting for its deadline.
      const started = Date.now();
      await expect(caller.gather(PATTERN, null)).rejects.toBeInstanceOf(NoRespondersError);
      expect(Date.now() - started).toBeLessThan(2000);

      // The supervisor's restart with the same id is not taken for a duplicate of a leftover.
      const restarted = new Responder({ redis: redis.url, namespace, instanceId: 'starter' }, { logger: quiet }).handle(PATTERN, () => 'restarted');
      await restarted.listen();
      try {
        const result = await caller.gather<string>(PATTERN, null);
        expect(result).toMatchObject({ completedBy: 'all', expected: 1, missing: [] });
        expect(result.replies.map((reply) => reply.data)).toEqual(['restarted']);
      } finally {
        await restarted.close();
      }
    } finally {
      await caller.close();
      admin.disconnect();
    }
  }, 60_000);
});
