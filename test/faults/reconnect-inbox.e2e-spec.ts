// Fault suite: right after Redis comes back, a caller publishes nothing before its inbox is
// subscribed again, so no request loses its replies to the reconnect.
// The figures reported with TEST_LOGS=1 ("FAULT ...") are the ones in docs/reliability.md.
import { BufferClient, type GatherResult } from 'nestjs-redis-buffer';
import { InstanceSpawner } from '../support/instances.js';
import { FAULT_APP } from '../support/load.js';
import { Redis } from 'ioredis';
import { sleep } from '../support/raw-redis.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { quietLogs, reportFault } from '../support/captured-logs.js';

quietLogs([/Redis/, /ECONNREFUSED/, /similar messages suppressed/, /connection/i]);
const namespace = 'fault-reconnect';

describe('fault: requests right after a Redis restart', () => {
  let redis: TestRedis;
  const instances = new InstanceSpawner(() => redis.url, namespace, FAULT_APP);

  beforeAll(async () => {
    redis = await startRedis();
    await Promise.all(['r1', 'r2'].map((id) => instances.spawn(id, { CONNECT_TIMEOUT: '5000' })));
  }, 60_000);

  afterAll(async () => {
    await instances.stopAll();
    await redis?.stop();
  });

  // Each instance's subscriber may be back before its publisher: a reply it could not publish then
  // is sent again once its publisher is back (ReplyResend), within the request's deadline.
  it('a request published as soon as the caller reports connected again gets every reply', async () => {
    const client = new BufferClient({ redis: redis.url, namespace, timeout: 1000 });
    await client.connect();
    try {
      await redis.kill();
      await sleep(500);
      await redis.restart();
      const restartedAt = Date.now();
      const outcomes: Array<{ at: number; result?: GatherResult<string>; error?: string }> = [];
      // Requests every 10 ms from the moment Redis listens again, for 2.5 s.
      const pending: Array<Promise<void>> = [];
      while (Date.now() - restartedAt < 2500) {
        const at = Date.now() - restartedAt;
        pending.push(
          client.gather<string>('whoami', null).then(
            (result) => void outcomes.push({ at, result }),
            (error: Error & { code?: string }) => void outcomes.push({ at, error: error.code ?? error.message }),
          ),
        );
        await sleep(10);
      }
      await Promise.all(pending);
      // Refused at once while not connected is fine (typed); a request that was published must get
      // every reply Redis's count promises.
      const lost = outcomes.filter(({ result }) => result !== undefined && result.completedBy === 'timeout');
      const firstWhole = outcomes.filter(({ result }) => result?.completedBy === 'all' && result.replies.length === 2).sort((a, b) => a.at - b.at)[0];
      reportFault('requests-after-redis-restart', { requests: outcomes.length, lost: lost.length, firstWholeAtMs: firstWhole?.at, errors: [...new Set(outcomes.map((o) => o.error).filter(Boolean))] });
      expect(lost.map(({ at, result }) => ({ at, expected: result!.expected, finished: result!.finished, missing: result!.missingReasons }))).toEqual([]);
      expect(firstWhole).toBeDefined();
    } finally {
      await client.close();
    }
  }, 30_000);

  it("a reply whose PUBLISH failed while the instance's publisher reconnected is sent again: a stream arrives whole and in order", async () => {
    const client = new BufferClient({ redis: redis.url, namespace, timeout: 5000 });
    const raw = new Redis(redis.url);
    await client.connect();
    try {
      const stats = async (id: string): Promise<{ repliesResent: number; replyPublishFailures: number }> =>
        (await client.gather<{ repliesResent: number; replyPublishFailures: number }>('stats', null, { to: id })).replies[0]!.data;
      const before = await stats('r1');
      // 60 values 10 ms apart from each instance; 150 ms in, r1's publisher connection is killed
      // (its subscriber stays): the values it writes while reconnecting cannot be published then.
      const gathering = client.gather<{ instance: string; n: number }>('stream', { count: 60, every: 10 }, { timeout: 4000 });
      await sleep(150);
      const list = (await raw.client('LIST')) as string;
      const line = list.split('\n').find((entry) => / name=rb:r1:pub /.test(`${entry} `));
      expect(line).toBeDefined();
      await raw.client('KILL', 'ID', /id=(\d+)/.exec(line!)![1]!);
      const result = await gathering;
      expect(result.completedBy).toBe('all');
      for (const id of ['r1', 'r2']) {
        expect(result.replies.filter((reply) => reply.instanceId === id).map((reply) => reply.data.n)).toEqual([...Array(60).keys()]);
      }
      const after = await stats('r1');
      reportFault('reply-resent-after-publisher-reconnect', { resent: after.repliesResent - before.repliesResent, lost: after.replyPublishFailures - before.replyPublishFailures });
      expect(after.repliesResent - before.repliesResent).toBeGreaterThan(0);
      expect(after.replyPublishFailures).toBe(before.replyPublishFailures);
    } finally {
      raw.disconnect();
      await client.close();
    }
  }, 30_000);
});
