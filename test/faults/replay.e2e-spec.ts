// Fault suite, replay: signed messages captured with a plain ioredis subscriber and published again
// (a request after its ttl, a request at once, a request to an instance that started after the
// capture, a restarted instance's old hello and bye), and signing between hosts with skewed clocks.
// The figures reported with TEST_LOGS=1 ("FAULT ...") are the ones in docs/reliability.md.
import { BufferClient } from 'nestjs-redis-buffer';
import type { Redis } from 'ioredis';
import { InstanceSpawner, type InstanceProcess } from '../support/instances.js';
import { FAULT_APP } from '../support/load.js';
import { collect, rawRedis, requestsIn, sleep } from '../support/raw-redis.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { quietLogs, reportFault } from '../support/captured-logs.js';

// The client-side drops these tests provoke on purpose: captured and asserted, not printed.
const logs = quietLogs([/^Dropped a (replayed|stale signed) message/, /similar messages suppressed/]);
const KEY = 'replay-suite-shared-signing-key-0123456789';

interface InstanceStats {
  bumps: number;
  replayedMessages: number;
  forgedMessages: number;
  requests: number;
}

/** A raw subscriber that keeps every message published on `channel`, as an eavesdropper would. */
async function eavesdrop(url: string, channel: string): Promise<{ messages: string[]; raw: Redis }> {
  const raw = rawRedis(url);
  const messages: string[] = [];
  raw.on('message', (received: string, message: string) => {
    if (received === channel) messages.push(message);
  });
  await raw.subscribe(channel);
  return { messages, raw };
}

async function until(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; !(await condition()); await sleep(20)) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
  }
}

const statsOf = async (client: BufferClient, id: string): Promise<InstanceStats> => (await client.gather<InstanceStats>('stats', null, { to: id })).replies[0]!.data;
const body = (signed: string): Record<string, unknown> => JSON.parse(signed).body as Record<string, unknown>;

describe('fault: replaying captured signed messages', () => {
  let redis: TestRedis;
  const namespace = 'replay';
  const spawner = new InstanceSpawner(() => redis.url, namespace, FAULT_APP);
  let client: BufferClient;
  let forger: Redis;

  beforeAll(async () => {
    redis = await startRedis();
    await Promise.all(['rp1', 'rp2'].map((id) => spawner.spawn(id, { SIGNING_KEY: KEY })));
    client = new BufferClient({ redis: redis.url, namespace, signingKey: KEY, timeout: 2000 });
    await client.connect();
    forger = rawRedis(redis.url);
  }, 60_000);

  afterAll(async () => {
    await client?.close();
    forger?.disconnect();
    await spawner.stopAll();
    await redis?.stop();
  });

  it('a signed request replayed 1.4 s after its 400 ms ttl runs on no instance again; each counts it as replayed and answers nothing', async () => {
    const spy = await eavesdrop(redis.url, `${namespace}:req:bump`);
    try {
      const first = await client.gather<number>('bump', null, { timeout: 400 });
      expect(first.completedBy).toBe('all');
      expect(first.replies.map((r) => r.instanceId).sort()).toEqual(['rp1', 'rp2']);
      await until(() => spy.messages.length === 1, 1000, 'the eavesdropper to capture the request');
      const captured = spy.messages[0]!;
      const [request] = requestsIn(body(captured));
      expect(request).toMatchObject({ kind: 'request', pattern: 'bump' });
      const before = await Promise.all(['rp1', 'rp2'].map((id) => statsOf(client, id)));
      await sleep(1400);

      const inbox = await collect(redis.url, request!.replyTo as string);
      // Redis delivers it: to both instances and the eavesdropper.
      expect(await forger.publish(`${namespace}:req:bump`, captured)).toBe(3);
      await sleep(300);
      const after = await Promise.all(['rp1', 'rp2'].map((id) => statsOf(client, id)));
      expect(after.map((s) => s.bumps)).toEqual(before.map((s) => s.bumps));
      expect(after.map((s, i) => s.replayedMessages - before[i]!.replayedMessages)).toEqual([1, 1]);
      expect(after.map((s, i) => s.forgedMessages - before[i]!.forgedMessages)).toEqual([0, 0]);
      // The inbox is the client's own (every request of it replies there): nothing answers the replayed id.
      // No reply to it, in either form (an object names `"id":…`; a compact reply opens with the id).
      expect(inbox.messages.filter((m) => JSON.stringify(body(m)).includes(JSON.stringify(request!.id)))).toEqual([]);
      await inbox.close();
      reportFault('replay-after-ttl', { ttlMs: 400, replayedAfterMs: 1400, handlerRunsAfterReplay: after.map((s, i) => s.bumps - before[i]!.bumps), replayedCounted: after.map((s, i) => s.replayedMessages - before[i]!.replayedMessages) });
    } finally {
      spy.raw.disconnect();
    }
  }, 20_000);

  it('a signed request replayed at once, twice, while the original is in flight, runs once per instance', async () => {
    const spy = await eavesdrop(redis.url, `${namespace}:req:bump`);
    try {
      const before = await Promise.all(['rp1', 'rp2'].map((id) => statsOf(client, id)));
      // Published again the moment the eavesdropper sees it, before the instances have answered.
      // (The eavesdropper hears its own replays too: only the first message is replayed.)
      let replayed = false;
      spy.raw.on('message', (_channel: string, message: string) => {
        if (replayed) return;
        replayed = true;
        void forger.publish(`${namespace}:req:bump`, message);
        void forger.publish(`${namespace}:req:bump`, message);
      });
      const result = await client.gather<number>('bump', null, { timeout: 1000 });
      await sleep(300);
      const after = await Promise.all(['rp1', 'rp2'].map((id) => statsOf(client, id)));
      expect(result.completedBy).toBe('all');
      expect(result.replies.map((r) => r.instanceId).sort()).toEqual(['rp1', 'rp2']);
      expect(after.map((s, i) => s.bumps - before[i]!.bumps)).toEqual([1, 1]);
      expect(after.map((s, i) => s.replayedMessages - before[i]!.replayedMessages)).toEqual([2, 2]);
      reportFault('replay-at-once', { replaysPublished: 2, handlerRuns: after.map((s, i) => s.bumps - before[i]!.bumps), replayedCounted: after.map((s, i) => s.replayedMessages - before[i]!.replayedMessages) });
    } finally {
      spy.raw.disconnect();
    }
  }, 20_000);

  it("a captured reply replayed into the caller while a later request is open is dropped by its stamp, and never counts for that request", async () => {
    // The caller's inbox, read off one of its requests (signing is not encryption).
    const requests = await eavesdrop(redis.url, `${namespace}:req:whoami`);
    await client.gather('whoami', null);
    await until(() => requests.messages.length === 1, 1000, 'the eavesdropper to capture a request');
    requests.raw.disconnect();
    const replyTo = requestsIn(body(requests.messages[0]!))[0]!.replyTo as string;
    const inbox = await eavesdrop(redis.url, replyTo);
    try {
      await client.gather('whoami', null);
      await until(() => inbox.messages.length >= 2, 1000, 'the eavesdropper to capture the replies');
      const captured = inbox.messages.slice(0, 2);
      const before = { ...client.stats };
      const pending = client.gather<number>('slow', 300, { timeout: 2000 });
      await sleep(50);
      for (const reply of captured) await forger.publish(replyTo, reply);
      const result = await pending;
      expect(result.completedBy).toBe('all');
      expect(result.replies.map((r) => r.data).sort()).toEqual(['rp1', 'rp2']);
      expect(client.stats.replayedMessages - before.replayedMessages).toBe(2);
      expect(client.stats.lateReplies - before.lateReplies).toBe(0);
      expect(client.stats.duplicateReplies - before.duplicateReplies).toBe(0);
      reportFault('replay-reply', { repliesReplayed: 2, droppedAsReplayed: client.stats.replayedMessages - before.replayedMessages, acceptedForLaterRequest: 0 });
    } finally {
      inbox.raw.disconnect();
    }
  }, 20_000);

  it('an instance started after the capture refuses the replay once it is older than its maxClockSkew (stale), and runs nothing', async () => {
    const spy = await eavesdrop(redis.url, `${namespace}:req:bump`);
    let late: InstanceProcess | undefined;
    try {
      await client.gather('bump', null, { timeout: 400 });
      await until(() => spy.messages.length === 1, 1000, 'the eavesdropper to capture the request');
      const capturedAt = Date.now();
      late = await spawner.spawn('rp3', { SIGNING_KEY: KEY, MAX_CLOCK_SKEW: '1000' });
      await until(() => client.knownInstances().some((i) => i.instanceId === 'rp3'), 5000, 'the client to learn rp3');
      await sleep(Math.max(0, capturedAt + 1500 - Date.now()));
      const before = await statsOf(client, 'rp3');
      await forger.publish(`${namespace}:req:bump`, spy.messages[0]!);
      await sleep(300);
      const after = await statsOf(client, 'rp3');
      expect(after.bumps).toBe(0);
      expect(after.replayedMessages - before.replayedMessages).toBe(1);
      expect(late.logs).toMatch(/Dropped a stale signed message on "replay:req:bump"/);
      reportFault('replay-to-late-instance', { maxClockSkewMs: 1000, replayedAfterMs: Date.now() - capturedAt, handlerRuns: after.bumps, staleCounted: after.replayedMessages - before.replayedMessages });
    } finally {
      spy.raw.disconnect();
      await late?.stop();
    }
  }, 30_000);

  it("a restarted instance's old hello and bye, replayed, neither remove nor resurrect anything: in a caller that saw them, nor in one that did not", async () => {
    const members = await eavesdrop(redis.url, `${namespace}:members`);
    const fresh: BufferClient[] = [];
    try {
      const first = await spawner.spawn('mb1', { SIGNING_KEY: KEY });
      await until(() => client.knownInstances().some((i) => i.instanceId === 'mb1'), 5000, 'the client to learn mb1');
      const oldIncarnation = client.knownInstances().find((i) => i.instanceId === 'mb1')!.incarnation;
      await first.stop();
      spawner.spawned.splice(spawner.spawned.indexOf(first), 1);
      await spawner.spawn('mb1', { SIGNING_KEY: KEY });
      await until(() => client.knownInstances().some((i) => i.instanceId === 'mb1' && i.incarnation !== oldIncarnation), 5000, 'the client to learn the new mb1');
      const newIncarnation = client.knownInstances().find((i) => i.instanceId === 'mb1')!.incarnation;
      const old = members.messages.filter((m) => body(m).from === 'mb1' && body(m).inc === oldIncarnation);
      const oldHello = old.find((m) => body(m).kind === 'hello')!;
      const oldBye = old.find((m) => body(m).kind === 'bye')!;
      expect(oldHello).toBeDefined();
      expect(oldBye).toBeDefined();

      // A caller that starts now never received them: their signature is fresh enough (within
      // maxClockSkew), so the membership rules must hold on their own.
      const late = new BufferClient({ redis: redis.url, namespace, signingKey: KEY, timeout: 2000 });
      fresh.push(late);
      await late.connect();
      const replayedBefore = client.stats.replayedMessages;
      const droppedBefore = late.stats.droppedMembership;
      for (const message of [oldHello, oldBye, oldBye]) await forger.publish(`${namespace}:members`, message);
      await sleep(300);

      for (const caller of [client, late]) {
        expect(caller.knownInstances().find((i) => i.instanceId === 'mb1')?.incarnation).toBe(newIncarnation);
        const result = await caller.gather<string>('whoami', null);
        expect(result.completedBy).toBe('all');
        expect(result.missing).toEqual([]);
        expect(result.replies.map((r) => r.data).sort()).toEqual(['mb1', 'rp1', 'rp2']);
      }
      // The caller that saw them drops them by their signature stamp; the late one by the membership rules.
      expect(client.stats.replayedMessages - replayedBefore).toBe(3);
      // With signingKey, hello and bye carry their incarnation's seq and clock (what the late caller's rules read).
      expect(body(oldHello)).toMatchObject({ seq: 0, at: expect.any(Number) });
      expect(body(oldBye)).toMatchObject({ seq: expect.any(Number), at: expect.any(Number) });
      expect(late.stats.replayedMessages).toBe(1); // the second copy of the bye
      // The hello: another incarnation, older than the one it knows; the bye: not the incarnation it holds.
      expect(late.stats.droppedMembership - droppedBefore).toBe(2);
      expect(logs.warnings().some((message) => message.startsWith('Dropped a replayed message on "replay:members"'))).toBe(true);
      reportFault('replay-membership', {
        replayed: ['hello', 'bye', 'bye'],
        droppedBySignatureInSeeingCaller: client.stats.replayedMessages - replayedBefore,
        droppedBySignatureInLateCaller: late.stats.replayedMessages,
        droppedByMembershipInLateCaller: late.stats.droppedMembership - droppedBefore,
        instanceAfter: 'mb1 kept, new incarnation, answering',
      });
    } finally {
      members.raw.disconnect();
      await Promise.all(fresh.map((c) => c.close()));
    }
  }, 40_000);
});

describe('fault: signing between hosts with skewed clocks', () => {
  let redis: TestRedis;
  const namespace = 'replay-skew';
  const spawner = new InstanceSpawner(() => redis.url, namespace, FAULT_APP);

  beforeAll(async () => {
    redis = await startRedis();
  });

  afterAll(async () => {
    await spawner.stopAll();
    await redis?.stop();
  });

  it('instances 2.5 s ahead and behind answer a signed caller on a true clock, and still refuse a replay', async () => {
    await Promise.all([spawner.spawn('sk-fast', { SIGNING_KEY: KEY, CLOCK_SKEW_MS: '2500' }), spawner.spawn('sk-slow', { SIGNING_KEY: KEY, CLOCK_SKEW_MS: '-2500' })]);
    const client = new BufferClient({ redis: redis.url, namespace, signingKey: KEY, timeout: 2000 });
    const spy = await eavesdrop(redis.url, `${namespace}:req:bump`);
    try {
      const outcomes: string[] = [];
      for (let i = 0; i < 20; i++) {
        const result = await client.gather<string>('whoami', null, { timeout: 300 });
        outcomes.push(`${result.completedBy}:${result.replies.map((r) => r.data).sort().join(',')}:${result.missing.join(',')}`);
      }
      expect(new Set(outcomes)).toEqual(new Set(['all:sk-fast,sk-slow:']));
      await client.gather('bump', null);
      const before = await Promise.all(['sk-fast', 'sk-slow'].map((id) => statsOf(client, id)));
      await publishOnce(redis.url, `${namespace}:req:bump`, spy.messages[0]!);
      await sleep(300);
      const after = await Promise.all(['sk-fast', 'sk-slow'].map((id) => statsOf(client, id)));
      expect(after.map((s) => s.bumps)).toEqual([1, 1]);
      expect(after.map((s, i) => s.replayedMessages - before[i]!.replayedMessages)).toEqual([1, 1]);
      expect(after.map((s) => s.forgedMessages)).toEqual([0, 0]);
      expect(client.stats.forgedMessages + client.stats.replayedMessages).toBe(0);
      reportFault('signing-clock-skew', { skewsMs: [2500, -2500], gathers: outcomes.length, whole: outcomes.filter((o) => o === 'all:sk-fast,sk-slow:').length, replayRuns: after.map((s) => s.bumps - 1) });
    } finally {
      spy.raw.disconnect();
      await client.close();
    }
  }, 40_000);
});

async function publishOnce(url: string, channel: string, message: string): Promise<void> {
  const raw = rawRedis(url);
  try {
    await raw.publish(channel, message);
  } finally {
    raw.disconnect();
  }
}
