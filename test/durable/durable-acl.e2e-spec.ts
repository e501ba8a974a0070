// Durable messaging as a Redis user allowed only the library's own keys (a least-privilege ACL):
// every script must name real keys in KEYS (no empty name, none built from ARGV), and the order
// index must keep keys apart even when one key's text begins with another's.
import { BufferClient, type DurableConsumer } from 'nestjs-redis-buffer';
import type { Redis } from 'ioredis';
import { rawRedis, sleep } from '../support/raw-redis.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { startConsumer, waitFor } from '../support/durable.js';

const FAST = { claimIdle: 300, claimInterval: 100, retryDelay: 20, maxRetryDelay: 80, maxAttempts: 2 } as const;

describe('durable messaging under a key-restricted ACL user', () => {
  let redis: TestRedis;
  let raw: Redis;
  let url: string;
  let client: BufferClient;
  let consumer: DurableConsumer | undefined;

  beforeAll(async () => {
    redis = await startRedis();
    raw = rawRedis(redis.url);
    // Keys of namespace "acl" only; every command and channel (the turn channels are pub/sub).
    await raw.call('ACL', 'SETUSER', 'worker', 'on', '>secret', 'resetkeys', '~acl:durable:*', 'resetchannels', '&*', '+@all');
    const parsed = new URL(redis.url);
    url = `redis://worker:secret@${parsed.host}`;
  });

  afterAll(async () => {
    await consumer?.close();
    await client?.close();
    raw?.disconnect();
    await redis?.stop();
  });

  it('publishes, orders, deduplicates, retries, dead-letters and releases with only its own keys reachable', async () => {
    const ran: Array<{ key: string | undefined; seq: number; attempt: number }> = [];
    let running = new Map<string, number>();
    let overlap = 0;
    ({ consumer } = await startConsumer(url, 'acl', 'c1', [
      {
        pattern: 'jobs',
        group: 'g',
        run: async (delivery) => {
          const { seq, fail } = delivery.data as { seq: number; fail?: boolean };
          const key = delivery.key ?? `#${seq}`;
          if ((running.get(key) ?? 0) > 0) overlap++;
          running.set(key, (running.get(key) ?? 0) + 1);
          await sleep(2);
          running.set(key, running.get(key)! - 1);
          ran.push({ key: delivery.key, seq, attempt: delivery.attempt });
          if (fail) throw new Error('always fails');
        },
      },
    ], FAST));
    client = new BufferClient({ redis: url, namespace: 'acl', durable: FAST });
    // Keys whose text begins with another key's: "a", "a1", "1:a", and one with the index's separator.
    const keys = ['a', 'a1', '1:a', 'a:'];
    let seq = 0;
    for (let round = 0; round < 5; round++) {
      for (const key of keys) await client.durable.publish('jobs', { seq: seq++ }, { key });
    }
    await client.durable.publish('jobs', { seq: seq++ });
    const first = await client.durable.publish('jobs', { seq: seq++ }, { idempotencyKey: 'once' });
    expect(await client.durable.publish('jobs', { seq: 999 }, { idempotencyKey: 'once' })).toBe(first);
    await client.durable.publish('jobs', { seq: seq++, fail: true }, { key: 'a', idempotencyKey: 'poison' });
    await waitFor('every entry run, the poison one twice', () => ran.length === seq + 1);
    await waitFor('the poison entry dead-lettered', async () => (await client.durable.deadLetters('jobs', 'g')).length === 1);
    for (const key of keys) {
      const seqs = ran.filter((run) => run.key === key && run.seq < 20).map((run) => run.seq);
      expect(seqs).toEqual([...Array(5).keys()].map((round) => round * keys.length + keys.indexOf(key)));
    }
    expect(overlap).toBe(0);
    expect(consumer!.stats).toMatchObject({ handled: seq - 1, deadLettered: 1, retried: 1, redisErrors: 0 });
    expect(ran.filter((run) => run.seq === 999)).toEqual([]);
    // Nothing left behind in the order index or the attempts hash once every entry is done.
    expect(await raw.zcard('acl:durable:{jobs}:order:g')).toBe(0);
    expect(await raw.hlen('acl:durable:{jobs}:attempts:g')).toBe(0);
  }, 30_000);
});
