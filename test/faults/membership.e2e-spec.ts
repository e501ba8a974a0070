// Fault suite: the caller's membership view under a stalled caller, forged hellos, and load from
// several callers (how much of the traffic liveness costs).
// The figures reported with TEST_LOGS=1 ("FAULT ...") are the ones in docs/reliability.md.
import { BufferClient, type GatherResult } from 'nestjs-redis-buffer';
import { InstanceProcess, InstanceSpawner } from '../support/instances.js';
import { LatencyProxy } from '../support/latency-proxy.js';
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

  it('a caller whose own event loop is blocked 3 s (7 liveness bounds) while its pings are out does not name the instances silent for its lag', async () => {
    // A liveness bound shorter than the instances' (whose beats while busy then do not cover every
    // round): this caller pings every round, and the stall can follow a ping.
    const client = new BufferClient({ redis: redis.url, namespace, timeout: 10_000, livenessTimeout: 400 });
    await client.connect();
    // Times the stall on the real connection: right after Redis answered a ping's PUBLISH (the
    // caller then measures silence from that moment), before the pong is read.
    const { publisher } = client.unwrap<{ publisher: { publish: (channel: string, message: string) => Promise<number> } }>();
    const publish = publisher.publish.bind(publisher);
    let stallNextPing = false;
    let stalls = 0;
    publisher.publish = (channel, message) => {
      const sent = publish(channel, message);
      if (stallNextPing && channel.startsWith(`${namespace}:direct:`)) {
        stallNextPing = false;
        void sent.then(() =>
          setImmediate(() => {
            stalls++;
            blockEventLoop(3000);
          }),
        );
      }
      return sent;
    };
    try {
      for (let run = 0; run < 3; run++) {
        const silentBefore = client.stats.silentInstances;
        const forgivenBefore = client.stats.lagForgiven;
        stallNextPing = true;
        const result = await client.gather<string>('slow', 1500);
        expect(summary(result)).toMatchObject({ completedBy: 'all', missing: [], replies: IDS, expected: 3 });
        expect(client.stats.silentInstances - silentBefore).toBe(0);
        expect(client.stats.lagForgiven - forgivenBefore).toBeGreaterThanOrEqual(1);
        // Still counted afterwards.
        expect(summary(await client.gather<string>('whoami', null))).toMatchObject({ completedBy: 'all', missing: [], replies: IDS });
      }
      expect(stalls).toBe(3);
      reportFault('caller-stalled-3s', { stalls, lagForgiven: client.stats.lagForgiven, silentInstances: client.stats.silentInstances });
    } finally {
      await client.close();
    }
  }, 60_000);

  it('a draining instance still answers who: a caller that never saw its hello knows it as draining, and its reply to an earlier request counts', async () => {
    const drainer = await instances.spawn('d1', { SHUTDOWN_TIMEOUT: '6000' });
    const before = new BufferClient({ redis: redis.url, namespace, timeout: 6000 });
    await before.connect();
    const admin = rawRedis(redis.url);
    let after: BufferClient | undefined;
    try {
      const inFlight = before.gather<string>('slow', 2500);
      await sleep(200);
      const stopping = drainer.stop('SIGTERM');
      // Draining: its request channels are left (Redis confirmed), its handler still runs.
      let numsub = 4;
      for (let deadline = Date.now() + 2000; numsub !== 3 && Date.now() < deadline; await sleep(10)) {
        numsub = Number(((await admin.pubsub('NUMSUB', `${namespace}:req:slow`)) as [string, number])[1]);
      }
      expect(numsub).toBe(3);
      expect(Number(((await admin.pubsub('NUMSUB', `${namespace}:who`)) as [string, number])[1])).toBe(4);
      // A caller started now never saw d1's hello: its first who round must tell it of d1, draining.
      after = new BufferClient({ redis: redis.url, namespace, timeout: 3000 });
      await after.connect();
      const newCallerSaw = after.knownInstances().map((member) => `${member.instanceId}${member.draining ? ':draining' : ''}`);
      expect(after.knownInstances().find((member) => member.instanceId === 'd1')).toMatchObject({ instanceId: 'd1', draining: true });
      const fresh = await after.gather<string>('whoami', null);
      expect(summary(fresh)).toMatchObject({ completedBy: 'all', missing: [], replies: IDS, expected: 3, observers: 0 });
      // Not asked new work: a direct request is refused by d1 itself, and the result is whole.
      const direct = await after.gather<string>('whoami', null, { to: 'd1' });
      expect(direct).toMatchObject({ completedBy: 'all', missing: [], expected: 1 });
      expect(direct.errors.map((error) => [error.instanceId, (error.error as { code: string }).code])).toEqual([['d1', 'BUFFER_SHUTTING_DOWN']]);
      // The caller that sent the earlier request asks afresh: d1 is there, draining, not gone.
      const asked = await before.instances();
      expect(asked.find((member) => member.instanceId === 'd1')).toMatchObject({ draining: true });
      const result = await inFlight;
      expect(summary(result)).toMatchObject({ completedBy: 'all', missing: [], replies: [...IDS, 'd1'].sort(), expected: 4 });
      expect(before.stats.lateReplies + after.stats.lateReplies + before.stats.malformedMessages + after.stats.malformedMessages).toBe(0);
      await stopping;
      // After its bye nobody holds it.
      expect(Number(((await admin.pubsub('NUMSUB', `${namespace}:who`)) as [string, number])[1])).toBe(3);
      reportFault('draining-answers-who', { numsubSlowWhileDraining: numsub, newCallerSaw });
    } finally {
      admin.disconnect();
      await after?.close();
      await before.close();
      await drainer.stop();
    }
  }, 30_000);

  it('requests that reach an instance while it starts are answered: a caller gathering in a tight loop gets a reply for every receiver Redis counted', async () => {
    const client = new BufferClient({ redis: redis.url, namespace, timeout: 3000 });
    await client.connect();
    const bad: unknown[] = [];
    let gathers = 0;
    let withNewcomer = 0;
    // A request that reaches the newcomer before its hello reaches the caller completes without
    // waiting for it: it counts as an observer, or, when its hello came before the request
    // completed, it is named `joining`; its answer then arrives late. A request it dropped would
    // have no answer at all: every observer and every `joining` must be matched by a late reply.
    let observers = 0;
    let joining = 0;
    const lateBefore = client.stats.lateReplies;
    const proxy = await LatencyProxy.start({ host: '127.0.0.1', port: redis.port }, 30);
    try {
      for (let start = 0; start < 4; start++) {
        let running = true;
        const loops = Array.from({ length: 40 }, async () => {
          while (running) {
            const result = await client.gather<string>('whoami', null);
            gathers++;
            observers += result.observers;
            if (result.replies.some((reply) => reply.instanceId === `late${start}`)) withNewcomer++;
            const namedJoining = result.missing.length === 1 && result.missingReasons[`late${start}`] === 'joining';
            if (namedJoining) joining++;
            if (result.completedBy !== 'all' || (result.missing.length > 0 && !namedJoining)) bad.push(summary(result));
          }
        });
        await sleep(100);
        // Behind 30 ms of latency each way: the instance is subscribed for a round trip or more
        // before it knows it is the only one with its id, and requests reach it meanwhile.
        const late = await InstanceProcess.start({ instanceId: `late${start}`, redisUrl: proxy.url, namespace, script: FAULT_APP });
        await sleep(300);
        running = false;
        await Promise.all(loops);
        await sleep(200);
        await late.stop();
      }
      const late = client.stats.lateReplies - lateBefore;
      reportFault('requests-during-start', { gathers, withNewcomer, completedEarly: observers + joining, namedJoining: joining, answeredLate: late, bad: bad.length });
      expect({ bad: bad.length, first: bad[0] }).toEqual({ bad: 0, first: undefined });
      expect(late).toBe(observers + joining);
      expect(withNewcomer).toBeGreaterThan(0);
    } finally {
      await client.close();
      await proxy.stop();
    }
  }, 60_000);

  it('a replacement with the same instanceId takes over from a frozen (SIGSTOPped) predecessor, which stops answering once thawed: never both counted', async () => {
    const client = new BufferClient({ redis: redis.url, namespace, timeout: 3000 });
    await client.connect();
    const admin = rawRedis(redis.url);
    const spawnedAt = Date.now();
    const old = await instances.spawn('x1');
    const plainStartMs = Date.now() - spawnedAt;
    let replacement: InstanceProcess | undefined;
    const numsub = async (channel: string) => Number(((await admin.pubsub('NUMSUB', `${namespace}:${channel}`)) as [string, number])[1]);
    try {
      expect(summary(await client.gather<string>('whoami', null))).toMatchObject({ completedBy: 'all', missing: [], replies: [...IDS, 'x1'].sort() });
      old.signal('SIGSTOP');
      const startedAt = Date.now();
      replacement = await instances.spawn('x1');
      const takeoverMs = Date.now() - startedAt;
      // Two liveness bounds of unanswered pings, then it starts as any instance does (a process
      // start here takes a second or more on a busy machine): a few bounds at most.
      expect(takeoverMs).toBeLessThan(plainStartMs + 2 * 1000 + 1500);
      expect(replacement.logs).toContain('taking over');
      // Callers count the new process: whole results with x1's reply, the frozen one an observer.
      let counted: GatherResult<string> | undefined;
      for (let deadline = Date.now() + 4000; Date.now() < deadline; await sleep(100)) {
        counted = await client.gather<string>('whoami', null);
        if (counted.replies.some((reply) => reply.instanceId === 'x1') && counted.missing.length === 0) break;
      }
      const countedMs = Date.now() - startedAt;
      expect(summary(counted!)).toMatchObject({ completedBy: 'all', missing: [], replies: [...IDS, 'x1'].sort() });
      old.signal('SIGCONT');
      // Thawed, it reads the notice and leaves every channel.
      for (let deadline = Date.now() + 3000; (await numsub('direct:x1')) !== 1 && Date.now() < deadline; await sleep(50));
      expect(await numsub('direct:x1')).toBe(1);
      expect(await numsub('req:whoami')).toBe(IDS.length + 1);
      expect(old.logs).toContain('was taken over by another process with the same instanceId');
      expect(replacement.exited).toBe(false);
      const after = await client.gather<string>('whoami', null);
      expect(summary(after)).toMatchObject({ completedBy: 'all', missing: [], replies: [...IDS, 'x1'].sort(), expected: IDS.length + 1, observers: 0 });
      expect(client.knownInstances().filter((member) => member.instanceId === 'x1')).toHaveLength(1);
      reportFault('takeover-from-frozen', { plainStartMs, takeoverMs, countedMs, numsubDirectAfterThaw: 1 });
    } finally {
      old.signal('SIGCONT');
      admin.disconnect();
      await client.close();
      await old.stop();
      await replacement?.stop();
    }
  }, 60_000);

  it('a ping whose pong was lost while no request waited any more is not held against the instance by the next request', async () => {
    // Its signs of life are really lost: Redis refuses the instance's PUBLISHes to this caller's
    // inbox and to the members channel (its ACL user loses them for a moment; it still receives
    // requests and pings), as what an instance publishes to a master that is failing over is.
    const admin = rawRedis(redis.url);
    const allChannels = [`&${namespace}:*`];
    const receiveOnly = ['req:*', 'evt:*', 'direct:*', 'who', 'probe*'].map((channel) => `&${namespace}:${channel}`);
    const setChannels = (channels: string[]): Promise<unknown> => admin.call('ACL', 'SETUSER', 'lossy', 'on', '>pw', '+@all', '~*', 'resetchannels', ...channels);
    await setChannels(allChannels);
    // Its network can be held for a moment (a request that takes a while to reach it).
    const proxy = await LatencyProxy.start({ host: '127.0.0.1', port: redis.port }, 0);
    const lossy = await InstanceProcess.start({ instanceId: 'lossy', redisUrl: `redis://lossy:pw@${new URL(proxy.url).host}`, namespace, script: FAULT_APP });
    // Rounds half a second apart (a liveness bound of 2 s), for slack on a busy machine.
    const client = new BufferClient({ redis: redis.url, namespace, timeout: 5000, livenessTimeout: 2000 });
    await client.connect();
    try {
      expect(summary(await client.gather<string>('whoami', null, { to: 'lossy' }))).toMatchObject({ completedBy: 'all', missing: [], replies: ['lossy'] });
      await setChannels(receiveOnly);
      // Waited on for a while, so pinged: at the second round after the first that looked at it
      // (it was heard from before), 1.5 or 2 s in, as the rounds' phase falls (the rounds of the
      // request before may still be running). It ends by its timeout before a round can judge the
      // ping: five eighths of the bound after its delivery, at a round at 3 s at the earliest.
      const first = await client.gather<string>('slow', 3000, { to: 'lossy', timeout: 2750 });
      expect(first).toMatchObject({ completedBy: 'timeout', missing: ['lossy'], missingReasons: { lossy: 'timeout' } });
      expect(client.stats.pings).toBeGreaterThanOrEqual(1);
      // Its reply is lost as well; then the channels are allowed again, and no request is open for 3 bounds.
      await sleep(1500);
      await setChannels(allChannels);
      await sleep(3000);
      // A request that takes over a second to reach it, so a liveness round comes before any sign
      // from it: that round must not find it silent on the strength of the old unanswered ping (it
      // pings afresh; the reply comes first).
      proxy.hold();
      const next = client.gather<string>('whoami', null, { to: 'lossy' });
      await sleep(1100);
      proxy.release();
      expect(summary(await next)).toMatchObject({ completedBy: 'all', missing: [], replies: ['lossy'] });
      expect(client.stats.silentInstances).toBe(0);
    } finally {
      admin.disconnect();
      await client.close();
      await lossy.stop();
      await proxy.stop();
    }
  }, 40_000);

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
