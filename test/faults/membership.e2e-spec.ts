// Fault suite: the caller's membership view under a stalled caller, forged hellos, and load from
// several callers (how much of the traffic liveness costs).
// The figures reported with TEST_LOGS=1 ("FAULT ...") are the ones in docs/reliability.md.
import { BufferClient, type GatherResult } from 'nestjs-redis-buffer';
import { InstanceSpawner } from '../support/instances.js';
import { FAULT_APP } from '../support/load.js';
import { rawRedis, sleep } from '../support/raw-redis.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { quietLogs, reportFault } from '../support/captured-logs.js';

quietLogs([]);
const namespace = 'fault-members';
const IDS = ['m1', 'm2', 'm3'];

async function publishCount(url: string): Promise<number> {
  const admin = rawRedis(url);
  try {
    const info = await admin.info('commandstats');
    return Number(/cmdstat_publish:calls=(\d+)/.exec(info)?.[1] ?? 0);
  } finally {
    admin.disconnect();
  }
}

function blockEventLoop(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // A long synchronous task: the process reads nothing meanwhile.
  }
}

const summary = (result: GatherResult<unknown>) => ({ ...result, replies: result.replies.map((reply) => reply.instanceId).sort() });

describe('fault: membership', () => {
  let redis: TestRedis;
  const instances = new InstanceSpawner(() => redis.url, namespace, FAULT_APP);

  beforeAll(async () => {
    redis = await startRedis();
    await Promise.all(IDS.map((id) => instances.spawn(id)));
  }, 60_000);

  afterAll(async () => {
    await instances.stopAll();
    await redis?.stop();
  });

  it('a caller whose own event loop stalls 900 ms right after a ping does not blame the instances for its lag', async () => {
    for (let run = 0; run < 3; run++) {
      const client = new BufferClient({ redis: redis.url, namespace, timeout: 4000 });
      await client.connect();
      try {
        await sleep(300);
        const gathering = client.gather<string>('slow', 1200);
        // The first liveness round pings at a quarter of livenessTimeout; the stall starts right
        // after the ping is written, before its pong (or Redis's answer) is read.
        setTimeout(() => setImmediate(() => setImmediate(() => blockEventLoop(900))), 250);
        const result = await gathering;
        expect(summary(result)).toMatchObject({ completedBy: 'all', missing: [], replies: IDS, expected: 3 });
        expect(client.stats.silentInstances).toBe(0);
        expect(client.stats.lagForgiven).toBeGreaterThanOrEqual(1);
      } finally {
        await client.close();
      }
    }
  }, 30_000);

  it('10,000 forged hellos: the table stays bounded, no ghost is pinged, and results stay whole', async () => {
    const client = new BufferClient({ redis: redis.url, namespace, timeout: 4000 });
    await client.connect();
    const forger = rawRedis(redis.url);
    try {
      const publishesBefore = await publishCount(redis.url);
      for (let batch = 0; batch < 10; batch++) {
        const hellos = Array.from({ length: 1000 }, (_, index) =>
          JSON.stringify({ v: 1, kind: 'hello', id: `f${batch}-${index}`, from: `ghost-${batch}-${index}`, inc: 'forged', patterns: ['slow', 'whoami'], events: [] }),
        );
        await forger.publish(`${namespace}:members`, `[${hellos.join(',')}]`);
      }
      await sleep(100);
      const pingsBefore = client.stats.pings;
      // Gathers that outlive several liveness rounds, and quick ones.
      const results = await Promise.all([
        ...Array.from({ length: 5 }, () => client.gather<string>('slow', 800)),
        ...Array.from({ length: 20 }, () => client.gather<string>('whoami', null)),
      ]);
      for (const result of results) expect(summary(result)).toMatchObject({ completedBy: 'all', missing: [], replies: IDS, expected: 3 });
      const pings = client.stats.pings - pingsBefore;
      const publishes = (await publishCount(redis.url)) - publishesBefore;
      // One ping per real instance per liveness round at most; none to a ghost.
      expect(pings).toBeLessThanOrEqual(IDS.length * 4);
      expect(client.stats.droppedMembership).toBeGreaterThanOrEqual(10_000 - 1024);
      expect(client.knownInstances().map((member) => member.instanceId).sort()).toEqual(IDS);
      expect(publishes).toBeLessThan(200);
      reportFault('forged-hellos-10000', { pings, publishes, dropped: client.stats.droppedMembership, heapMb: Math.round(process.memoryUsage().heapUsed / 1e6) });
    } finally {
      forger.disconnect();
      await client.close();
    }
  }, 30_000);

  it('liveness traffic with several callers and slow handlers: one ping per instance per round, shared by every request', async () => {
    const CALLERS = 3;
    const IN_FLIGHT = 10;
    const HANDLER_MS = 2000;
    const RUN_MS = 6000;
    const clients = await Promise.all(
      Array.from({ length: CALLERS }, async () => {
        const client = new BufferClient({ redis: redis.url, namespace, timeout: HANDLER_MS + 2000 });
        await client.connect();
        return client;
      }),
    );
    try {
      const publishesBefore = await publishCount(redis.url);
      const before = clients.map((client) => ({ ...client.stats }));
      const startedAt = Date.now();
      let incomplete = 0;
      await Promise.all(
        clients.flatMap((client) =>
          Array.from({ length: IN_FLIGHT }, async () => {
            while (Date.now() - startedAt < RUN_MS) {
              const result = await client.gather<string>('slow', HANDLER_MS);
              if (result.completedBy !== 'all' || result.missing.length > 0) incomplete++;
            }
          }),
        ),
      );
      const seconds = (Date.now() - startedAt) / 1000;
      const publishes = (await publishCount(redis.url)) - publishesBefore;
      const delta = (key: 'pings' | 'requests' | 'replies') => clients.reduce((sum, client, index) => sum + client.stats[key] - before[index]![key], 0);
      const pings = delta('pings');
      const requests = delta('requests');
      const replies = delta('replies');
      // Pongs answer pings one for one: membership envelopes are twice the pings.
      const membershipEnvelopes = 2 * pings;
      const requestEnvelopes = requests + replies;
      const figures = {
        callers: CALLERS,
        instances: IDS.length,
        handlerMs: HANDLER_MS,
        seconds: Math.round(seconds * 10) / 10,
        requests,
        replies,
        pings,
        publishes,
        membershipToRequestEnvelopes: Math.round((membershipEnvelopes / requestEnvelopes) * 1000) / 1000,
        membershipToAllPublishes: Math.round((membershipEnvelopes / publishes) * 1000) / 1000,
      };
      reportFault('liveness-traffic', figures);
      expect(incomplete).toBe(0);
      // Shared: at most one ping per (caller, instance) per liveness round (4 per second), however
      // many requests wait on the instance.
      expect(pings / (CALLERS * IDS.length * seconds)).toBeLessThanOrEqual(4);
    } finally {
      await Promise.all(clients.map((client) => client.close()));
    }
  }, 40_000);
});
