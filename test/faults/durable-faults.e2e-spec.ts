// Fault suite for durable messaging, on real processes and a real redis-server with appendonly
// (appendfsync always):
// a consumer SIGKILLed mid-handler, Redis SIGKILLed and restarted from its AOF under load, a poison
// message that kills every consumer running it, and a group whose every instance is down for a
// while. Each test prints "DURABLE <name> {counts}" (quoted in docs/reliability.md); lost must be 0.
import { BufferClient } from 'nestjs-redis-buffer';
import type { Redis } from 'ioredis';
import { InstanceProcess, startInstances, stopAll } from '../support/instances.js';
import { rawRedis, sleep } from '../support/raw-redis.js';
import { DURABLE_AOF, startRedis, type TestRedis } from '../support/redis-server.js';
import { DURABLE_APP, publishUntilAccepted, records, report, waitFor } from '../support/durable.js';
import { jest } from '@jest/globals';

// Real processes, real failovers and real timing on a shared 2-core machine: a case that misses a
// timing bound once is run again, and the first failure is still printed.
jest.retryTimes(1, { logErrorsBeforeRetry: true });

interface Run {
  group: string;
  n: number;
  attempt: number;
  instance: string;
  entryId: string;
  /** One id per handler run. */
  run: string;
  key?: string;
  /** The topic the entry was published to. */
  topic?: string;
  /** When the run recorded it (ms, the recording process's clock). */
  at: number;
}

/**
 * Keys whose entries a group handled out of publication order (`n` grows with publication within a
 * key), by when each run recorded its end (`at`, taken in the handler before the record is sent),
 * not by where the record landed in the list: a record whose write a Redis crash cut off is sent
 * again when its process's recorder reconnects, and lands after later ones.
 */
function outOfOrderKeys(runs: readonly Run[], group: string): string[] {
  const last = new Map<string, number>();
  const broken = new Set<string>();
  // A record written twice for one run counts once; Array.prototype.sort is stable for equal times.
  const byEnd = [...new Map(runs.map((run) => [run.run, run])).values()].sort((a, b) => a.at - b.at);
  for (const run of byEnd.filter((run) => run.group === group && run.key !== undefined)) {
    if ((last.get(run.key!) ?? -1) > run.n) broken.add(run.key!);
    last.set(run.key!, Math.max(last.get(run.key!) ?? -1, run.n));
  }
  return [...broken];
}

/** The runs of entries that ran to success more than once, for the report (at most 6). */
function duplicateRuns(runs: readonly Run[], group: string): string[] {
  const mine = [...new Map(runs.filter((run) => run.group === group).map((run) => [run.run, run])).values()];
  const byN = new Map<number, Run[]>();
  for (const run of mine) byN.set(run.n, [...(byN.get(run.n) ?? []), run]);
  return [...byN.values()]
    .filter((list) => list.length > 1)
    .flatMap((list) => list.map((run) => `n=${run.n} ${run.instance} attempt=${run.attempt} at=${(run as Run & { at: number }).at}`))
    .slice(0, 6);
}

/** Counts one group's runs against what was published: lost must be 0, duplicates ideally 0. */
function count(runs: readonly Run[], group: string, published: readonly number[]): { published: number; handled: number; duplicates: number; lost: number } {
  // A record written twice for one run (the recorder resends a command whose reply a Redis crash
  // cut off) is one run.
  const wanted = new Set(published);
  const mine = [...new Map(runs.filter((run) => run.group === group && wanted.has(run.n)).map((run) => [run.run, run])).values()];
  const distinct = new Set(mine.map((run) => run.n));
  return {
    published: published.length,
    handled: distinct.size,
    duplicates: mine.length - distinct.size,
    lost: published.filter((n) => !distinct.has(n)).length,
  };
}

describe('fault: durable messaging', () => {
  let redis: TestRedis;
  let raw: Redis;
  let client: BufferClient;
  let instances: InstanceProcess[];
  let namespace: string;
  let suite = 0;

  beforeAll(async () => {
    // "lost must be 0" must not depend on luck.
    redis = await startRedis(DURABLE_AOF);
    raw = rawRedis(redis.url);
    raw.on('error', () => undefined);
  });

  afterAll(async () => {
    raw?.disconnect();
    await redis?.stop();
  });

  beforeEach(() => {
    namespace = `df${++suite}`;
    instances = [];
  });

  afterEach(async () => {
    await client?.close();
    await stopAll(instances.filter((instance) => !instance.exited));
  });

  function start(ids: readonly string[], groups: string, durable: Record<string, unknown>): Promise<InstanceProcess[]> {
    return startInstances(ids.map((instanceId) => ({ instanceId, redisUrl: redis.url, namespace, script: DURABLE_APP, env: { GROUPS: groups, DURABLE: JSON.stringify(durable) } }))).then((started) => {
      instances.push(...started);
      return started;
    });
  }

  it('an instance SIGKILLed mid-handler: its entries run again on another instance, exactly once with an idempotency key', async () => {
    const durable = { claimIdle: 1000, claimInterval: 200 };
    const [k1] = await start(['k1'], 'a', durable);
    client = new BufferClient({ redis: redis.url, namespace, durable });
    const published = [...Array(40).keys()];
    const publish = (n: number): Promise<string> => client.durable.publish('job', { n, sleepMs: 400 }, { idempotencyKey: `job-${n}` });
    const ids = await Promise.all(published.map(publish));
    // k1 is alone: it takes up to maxInFlight (32) entries and starts all of them.
    await waitFor('k1 mid-handler', async () => (await records<Run>(raw, namespace, 'started')).length >= 20);
    await k1!.stop('SIGKILL');
    const killedAt = Date.now();
    const startedOnK1 = (await records<Run>(raw, namespace, 'started')).length;
    await start(['k2'], 'a', durable);
    // Publishing again (a publisher retrying after a timeout) adds nothing.
    expect(await Promise.all(published.map(publish))).toEqual(ids);
    await waitFor('every job handled', async () => new Set((await records<Run>(raw, namespace, 'handled')).map((r) => r.n)).size === published.length, 20_000);
    const recoveredMs = Date.now() - killedAt;
    await sleep(durable.claimIdle + 500);
    const runs = await records<Run>(raw, namespace, 'handled');
    const counts = count(runs, 'a', published);
    const rerun = runs.filter((run) => run.attempt > 1).length;
    report('sigkill-mid-handler', { ...counts, startedOnKilledInstance: startedOnK1, handledOnK1: runs.filter((r) => r.instance === 'k1').length, rerunElsewhere: rerun, recoveredMs });
    expect(counts.lost).toBe(0);
    expect(counts.duplicates).toBe(0);
    expect(runs.filter((r) => r.instance === 'k1')).toHaveLength(0);
    expect(rerun).toBeGreaterThanOrEqual(startedOnK1);
    expect(runs.every((r) => r.instance === 'k2')).toBe(true);
    expect(await raw.xlen(client.durable.keysFor('job').stream)).toBe(published.length);
  }, 60_000);

  it('Redis SIGKILLed and restarted from its AOF under load: no entry acknowledged to the publisher is lost, in any group', async () => {
    const durable = { claimIdle: 1500, claimInterval: 250 };
    await start(['r1', 'r2'], 'a', durable);
    await start(['r3'], 'b', durable);
    client = new BufferClient({ redis: redis.url, namespace, durable, connectTimeout: 2000 });
    const accepted: number[] = [];
    let publishErrors = 0;
    let next = 0;
    let publishing = true;
    const publisher = async (): Promise<void> => {
      while (publishing) {
        const n = next++;
        publishErrors += await publishUntilAccepted(() => client.durable.publish('job', { n, sleepMs: 5 }, { idempotencyKey: `job-${n}` }));
        accepted.push(n);
        await sleep(5);
      }
    };
    const publishers = Promise.all([...Array(4).keys()].map(publisher));
    await sleep(1500);
    const acceptedBeforeKill = accepted.length;
    await redis.kill();
    const killedAt = Date.now();
    await sleep(1000);
    await redis.restart();
    const restartedAt = Date.now();
    await sleep(2000);
    publishing = false;
    await publishers;
    await waitFor(
      'both groups to handle every accepted entry',
      async () => {
        const runs = await records<Run>(raw, namespace, 'handled').catch(() => []);
        return count(runs, 'a', accepted).lost === 0 && count(runs, 'b', accepted).lost === 0;
      },
      30_000,
    ).catch(() => undefined);
    const runs = await records<Run>(raw, namespace, 'handled');
    const a = count(runs, 'a', accepted);
    const b = count(runs, 'b', accepted);
    report('redis-restart-aof', { groupA: a, groupB: b, acceptedBeforeKill, publishErrorsDuringOutage: publishErrors, downMs: restartedAt - killedAt, killedAt, restartedAt, duplicateRuns: [...duplicateRuns(runs, 'a'), ...duplicateRuns(runs, 'b')] });
    expect(accepted.length).toBeGreaterThan(acceptedBeforeKill);
    expect(a.lost).toBe(0);
    expect(b.lost).toBe(0);
  }, 90_000);

  it('a group bound to a wildcard pattern, its instance SIGKILLed mid-handler: its entries of every topic run again elsewhere, once, in per-key order', async () => {
    const durable = { claimIdle: 1000, claimInterval: 200 };
    const [k1] = await start(['k1'], 'w', durable);
    client = new BufferClient({ redis: redis.url, namespace, durable });
    const published = [...Array(40).keys()];
    const topicOf = (n: number): string => (n % 2 === 0 ? 'job.created' : 'job.updated');
    // Four keys: k1 runs the head of each, the rest of each key waits its turn behind it.
    const publish = (n: number): Promise<string> => client.durable.publish(topicOf(n), { n, sleepMs: 150 }, { key: `key-${n % 4}`, idempotencyKey: `job-${n}` });
    const ids: string[] = [];
    for (const n of published) ids.push(await publish(n));
    await waitFor('k1 mid-handler', async () => (await records<Run>(raw, namespace, 'started')).length >= 4);
    await k1!.stop('SIGKILL');
    const killedAt = Date.now();
    const started = await records<Run>(raw, namespace, 'started');
    await start(['k2'], 'w', durable);
    // A publisher retrying after a timeout adds nothing to the topics' streams nor to the binding's.
    for (const n of published) expect(await publish(n)).toBe(ids[n]);
    await waitFor('every job handled', async () => new Set((await records<Run>(raw, namespace, 'handled')).map((r) => r.n)).size === published.length, 30_000);
    const recoveredMs = Date.now() - killedAt;
    await sleep(durable.claimIdle + 500);
    const runs = await records<Run>(raw, namespace, 'handled');
    const counts = count(runs, 'w', published);
    const outOfOrder = outOfOrderKeys(runs, 'w');
    const rerun = runs.filter((run) => run.attempt > 1).length;
    report('wildcard-sigkill-mid-handler', { ...counts, startedOnKilledInstance: started.filter((r) => r.instance === 'k1').length, handledOnK1: runs.filter((r) => r.instance === 'k1').length, rerunElsewhere: rerun, outOfOrderKeys: outOfOrder, recoveredMs });
    expect(counts.lost).toBe(0);
    expect(counts.duplicates).toBe(0);
    expect(outOfOrder).toEqual([]);
    // Every entry k1 started and did not finish ran again on k2.
    expect(rerun).toBeGreaterThanOrEqual(started.filter((r) => r.instance === 'k1').length - runs.filter((r) => r.instance === 'k1').length);
    expect(rerun).toBeGreaterThanOrEqual(1);
    expect(runs.every((run) => run.topic === topicOf(run.n))).toBe(true);
    expect(await raw.xlen(client.durable.keysFor('job.*').stream)).toBe(published.length);
    expect(await raw.xlen(client.durable.keysFor('job.created').stream)).toBe(published.length / 2);
  }, 60_000);

  it('Redis SIGKILLed and restarted from its AOF under load: no entry acknowledged to the publisher is lost in groups bound to wildcard patterns, per-key order kept', async () => {
    const durable = { claimIdle: 1500, claimInterval: 250 };
    await start(['r1', 'r2'], 'w', durable);
    await start(['r3'], 'wr', durable);
    client = new BufferClient({ redis: redis.url, namespace, durable, connectTimeout: 2000 });
    const accepted: number[] = [];
    const deepAccepted: number[] = [];
    let publishErrors = 0;
    let publishing = true;
    // Four publishers, each with keys of its own: publishes of one key never overlap, so the
    // order they were accepted in is the order each group must keep.
    const publisher = async (p: number): Promise<void> => {
      for (let i = 0; publishing; i++) {
        const n = p + 4 * i;
        // Every third entry under a deeper topic only "job.>" matches.
        const topic = n % 3 === 0 ? 'job.deep.created' : n % 3 === 1 ? 'job.created' : 'job.updated';
        publishErrors += await publishUntilAccepted(() => client.durable.publish(topic, { n, sleepMs: 5 }, { key: `key-${p}-${i % 2}`, idempotencyKey: `job-${n}` }));
        (n % 3 === 0 ? deepAccepted : accepted).push(n);
        await sleep(5);
      }
    };
    const publishers = Promise.all([...Array(4).keys()].map(publisher));
    await sleep(1500);
    const acceptedBeforeKill = accepted.length + deepAccepted.length;
    await redis.kill();
    const killedAt = Date.now();
    await sleep(1000);
    await redis.restart();
    const restartedAt = Date.now();
    await sleep(2000);
    publishing = false;
    await publishers;
    const all = [...accepted, ...deepAccepted];
    await waitFor(
      'both groups to handle every accepted entry they match',
      async () => {
        const runs = await records<Run>(raw, namespace, 'handled').catch(() => []);
        return count(runs, 'w', accepted).lost === 0 && count(runs, 'wr', all).lost === 0;
      },
      30_000,
    ).catch(() => undefined);
    const runs = await records<Run>(raw, namespace, 'handled');
    const w = count(runs, 'w', accepted);
    const wr = count(runs, 'wr', all);
    const strayInW = runs.filter((run) => run.group === 'w' && run.topic === 'job.deep.created').length;
    report('wildcard-redis-restart-aof', { groupStar: w, groupRest: wr, strayInStar: strayInW, acceptedBeforeKill, publishErrorsDuringOutage: publishErrors, downMs: restartedAt - killedAt, outOfOrderKeys: [...outOfOrderKeys(runs, 'w'), ...outOfOrderKeys(runs, 'wr')], duplicateRuns: [...duplicateRuns(runs, 'w'), ...duplicateRuns(runs, 'wr')] });
    expect(all.length).toBeGreaterThan(acceptedBeforeKill);
    expect(w.lost).toBe(0);
    expect(wr.lost).toBe(0);
    expect(strayInW).toBe(0);
    for (const group of ['w', 'wr']) {
      const [key] = outOfOrderKeys(runs, group);
      // The whole history of the first key out of order, for the diagnosis.
      if (key !== undefined) process.stdout.write(`DURABLE wildcard-redis-restart-aof ${group} ${key}: ${[...runs].sort((a, b) => a.at - b.at).filter((run) => run.group === group && run.key === key).map((run) => `${run.n}@${run.instance}#${run.attempt}/${run.entryId}/${run.at}`).join(' ')}\n`);
    }
    expect(outOfOrderKeys(runs, 'w')).toEqual([]);
    expect(outOfOrderKeys(runs, 'wr')).toEqual([]);
  }, 90_000);

  it('a poison message that kills every instance running it reaches the dead-letter stream after maxAttempts, and the rest is handled', async () => {
    const durable = { claimIdle: 800, claimInterval: 100, maxAttempts: 3 };
    await start(['p1', 'p2', 'p3'], 'a', durable);
    client = new BufferClient({ redis: redis.url, namespace, durable });
    const normal = [...Array(40).keys()];
    for (const n of normal.slice(0, 20)) await client.durable.publish('job', { n, sleepMs: 20 }, { idempotencyKey: `job-${n}` });
    const poisonId = await client.durable.publish('job', { n: 999, crash: true });
    for (const n of normal.slice(20)) await client.durable.publish('job', { n, sleepMs: 20 }, { idempotencyKey: `job-${n}` });
    await waitFor('three crashes', () => instances.filter((instance) => instance.exited).length === 3, 20_000);
    // Every instance is down; a fresh one finds the poison with its attempts used up.
    await start(['p4'], 'a', durable);
    await waitFor('the dead letter', async () => (await client.durable.deadLetters('job', 'a')).length === 1, 10_000);
    await waitFor('every normal job', async () => count(await records<Run>(raw, namespace, 'handled'), 'a', normal).lost === 0, 10_000);
    const [dead] = await client.durable.deadLetters('job', 'a');
    const runs = await records<Run>(raw, namespace, 'handled');
    const crashes = (await records<Run>(raw, namespace, 'started')).filter((r) => r.n === 999).length;
    report('poison-message', { ...count(runs, 'a', normal), poisonRuns: crashes, deadLettered: 1, deadLetterAttempts: dead!.attempts, duplicateRuns: duplicateRuns(runs, 'a') });
    expect(dead).toMatchObject({ entryId: poisonId, attempts: 3, consumer: 'p4', error: { code: 'BUFFER_ATTEMPTS_EXHAUSTED' } });
    expect(crashes).toBe(3);
    expect(count(runs, 'a', normal).lost).toBe(0);
  }, 60_000);

  it('an instance frozen (SIGSTOP) shorter than claimIdle keeps its entries; frozen longer, they run elsewhere, and its own runs finish too when it thaws', async () => {
    const durable = { claimIdle: 1500, claimInterval: 100 };
    const [s1] = await start(['s1'], 'a', durable);
    await start(['s2'], 'a', durable);
    client = new BufferClient({ redis: redis.url, namespace, durable });
    const startedOn = async (instance: string, ns: readonly number[]): Promise<boolean> =>
      (await records<Run>(raw, namespace, 'started')).filter((r) => r.instance === instance && ns.includes(r.n)).length > 0;

    // Short freeze: 0.5 x claimIdle, in the middle of a 1 s handler. Nobody claims.
    const short = [...Array(10).keys()];
    for (const n of short) await client.durable.publish('job', { n, sleepMs: 1000 });
    await waitFor('s1 working', () => startedOn('s1', short));
    s1!.signal('SIGSTOP');
    await sleep(durable.claimIdle / 2);
    s1!.signal('SIGCONT');
    await waitFor('the short batch', async () => count(await records<Run>(raw, namespace, 'handled'), 'a', short).lost === 0, 10_000);
    await sleep(durable.claimIdle + 500);
    const shortCounts = count(await records<Run>(raw, namespace, 'handled'), 'a', short);

    // Long freeze: 3 x claimIdle, in the middle of 2 s handlers. s2 claims and runs s1's entries.
    const long = [...Array(10).keys()].map((n) => 100 + n);
    for (const n of long) await client.durable.publish('job', { n, sleepMs: 2000 });
    await waitFor('all 10 started', async () => (await records<Run>(raw, namespace, 'started')).filter((r) => long.includes(r.n)).length === long.length);
    expect(await startedOn('s1', long)).toBe(true);
    s1!.signal('SIGSTOP');
    const frozenWith = (await records<Run>(raw, namespace, 'started')).filter((r) => r.instance === 's1' && long.includes(r.n)).length;
    await waitFor('s2 to run what s1 holds', async () => count(await records<Run>(raw, namespace, 'handled'), 'a', long).lost === 0, 20_000);
    s1!.signal('SIGCONT');
    await sleep(2500);
    const runs = await records<Run>(raw, namespace, 'handled');
    const longCounts = count(runs, 'a', long);
    report('frozen-instance', { short: shortCounts, long: longCounts, runningOnFrozenInstance: frozenWith, finishedByFrozenAfterThaw: runs.filter((r) => r.instance === 's1' && long.includes(r.n)).length });
    expect(shortCounts).toMatchObject({ lost: 0, duplicates: 0 });
    expect(longCounts.lost).toBe(0);
    // The documented limit: runs in progress on a frozen instance finish when it thaws, while the
    // group has already run those entries elsewhere.
    expect(longCounts.duplicates).toBeLessThanOrEqual(frozenWith);
  }, 60_000);

  it('a group whose every instance is down for a while catches up when they return, without losing or repeating an entry', async () => {
    const durable = { claimIdle: 1000, claimInterval: 200 };
    await start(['a1'], 'a', durable);
    const [b1, b2] = await start(['b1', 'b2'], 'b', durable);
    client = new BufferClient({ redis: redis.url, namespace, durable });
    const published = [...Array(200).keys()];
    for (const n of published.slice(0, 40)) await client.durable.publish('job', { n, sleepMs: 50 });
    await sleep(100);
    // Graceful stop mid-work: running handlers finish, the rest is released to the group.
    await Promise.all([b1!.stop('SIGTERM'), b2!.stop('SIGTERM')]);
    const downSince = Date.now();
    for (const n of published.slice(40)) await client.durable.publish('job', { n, sleepMs: 1 });
    await waitFor('group a to handle everything meanwhile', async () => count(await records<Run>(raw, namespace, 'handled'), 'a', published).lost === 0, 20_000);
    const handledByBWhileDown = count(await records<Run>(raw, namespace, 'handled'), 'b', published).handled;
    await sleep(500);
    const restartAt = Date.now();
    await start(['b1', 'b2'], 'b', durable);
    await waitFor('group b to catch up', async () => count(await records<Run>(raw, namespace, 'handled'), 'b', published).lost === 0, 20_000);
    const caughtUpMs = Date.now() - restartAt;
    await sleep(300);
    const runs = await records<Run>(raw, namespace, 'handled');
    report('group-down-catch-up', { groupA: count(runs, 'a', published), groupB: count(runs, 'b', published), handledByBBeforeStop: handledByBWhileDown, downMs: restartAt - downSince, caughtUpMs });
    expect(count(runs, 'a', published)).toMatchObject({ lost: 0, duplicates: 0 });
    expect(count(runs, 'b', published)).toMatchObject({ lost: 0, duplicates: 0 });
  }, 60_000);
});
