// Signing on a 3-master Redis Cluster (sharded pub/sub): request, reply, members and inbox channels
// live on different masters, each reached by its own connection. Replay protection relies on one
// sender's messages reaching a subscriber in order per channel; this checks that signed traffic
// flows there under load with nothing taken for a replay, and that a replay is still dropped.
import { BufferClient, Responder } from 'nestjs-redis-buffer';
import { sleep } from '../support/raw-redis.js';
import { clusterTarget, type RedisTarget } from '../support/redis-target.js';

const KEY = 'cluster-suite-shared-signing-key-0123456789';
const quiet = { log: () => undefined, warn: () => undefined, error: () => undefined };

describe('signing on a Redis Cluster', () => {
  let target: RedisTarget;
  const responders: Responder[] = [];
  let client: BufferClient;
  let runs = 0;

  beforeAll(async () => {
    target = await clusterTarget({ masters: 3 });
    for (const id of ['cs1', 'cs2', 'cs3']) {
      const responder = new Responder({ ...target.connection, namespace: 'csign', instanceId: id, signingKey: KEY }, { logger: quiet });
      responder.handle('whoami', () => id).handle('bump', () => ++runs);
      await responder.listen();
      responders.push(responder);
    }
    client = new BufferClient({ ...target.connection, namespace: 'csign', signingKey: KEY, timeout: 2000 });
    await client.connect();
  }, 90_000);

  afterAll(async () => {
    await client?.close();
    await Promise.all(responders.map((responder) => responder.close()));
    await target?.stop();
  });

  it('2,000 gathers, 32 in flight, across shards: all whole, nothing dropped as replayed or forged anywhere', async () => {
    const outcomes = new Map<string, number>();
    let started = 0;
    const worker = async (): Promise<void> => {
      while (started++ < 2000) {
        const result = await client.gather<string>('whoami', null);
        const key = `${result.completedBy}:${result.replies.length}:${result.missing.length}:${result.observers}`;
        outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));
    expect(Object.fromEntries(outcomes)).toEqual({ 'all:3:0:0': 2000 });
    expect(client.stats.replayedMessages + client.stats.forgedMessages).toBe(0);
    expect(responders.map((r) => r.stats.replayedMessages + r.stats.forgedMessages)).toEqual([0, 0, 0]);
  }, 60_000);

  it('a captured signed request published again runs nowhere', async () => {
    const spy = await target.collect('csign:req:bump');
    try {
      await client.gather('bump', null);
      for (let i = 0; i < 50 && spy.messages.length === 0; i++) await sleep(20);
      const before = runs;
      const replayedBefore = responders.map((r) => r.stats.replayedMessages);
      expect(await target.publish('csign:req:bump', spy.messages[0]!)).toBe(4); // 3 instances and the spy
      await sleep(300);
      expect(runs).toBe(before);
      expect(responders.map((r, i) => r.stats.replayedMessages - replayedBefore[i]!)).toEqual([1, 1, 1]);
    } finally {
      await spy.close();
    }
  }, 30_000);
});
