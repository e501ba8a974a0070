// A consumer frozen (SIGSTOP) past claimIdle while it runs keyed entries, thawed while the claimer
// still runs them: ownership is checked in Redis, so the thawed consumer's late acknowledgements are
// refused (and counted), never release a key's turn, and it starts nothing the claimer holds. The
// handlers' own logs must show no two runs of a key side by side, except the runs frozen mid-handler
// themselves (a frozen handler cannot be stopped; it finishes when thawed, and is told so through
// its abort signal and the refused acknowledgement).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BufferClient } from 'nestjs-redis-buffer';
import type { InstanceProcess } from '../support/instances.js';
import { sleep } from '../support/raw-redis.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { report, waitFor } from '../support/durable.js';
import { startWorker, keyViolations, readLogs, runsOf, type Outage } from './worker-log.js';

const CLAIM_IDLE = 1000;
/** Each run's length: the freeze must land inside a round of runs, well clear of its ends. */
const RUN_MS = 500;
/** The freeze waits for a round whose runs all started within this: RUN_MS minus it is the margin for a pause before the signal. */
const JUST_STARTED_MS = 100;

describe('durable: a consumer frozen past claimIdle', () => {
  let redis: TestRedis;
  let dir: string;
  let client: BufferClient;
  const processes: InstanceProcess[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    dir = mkdtempSync(join(tmpdir(), 'rb-freeze-'));
  });

  afterAll(async () => {
    await Promise.all(processes.map((instance) => instance.stop('SIGKILL')));
    await client?.close();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function worker(instanceId: string): Promise<InstanceProcess> {
    const instance = await startWorker(redis.url, 'freeze', dir, instanceId, { claimIdle: CLAIM_IDLE, claimInterval: 200 });
    processes.push(instance);
    return instance;
  }


  it('never runs two entries of a key side by side, refuses and counts the late acknowledgements', async () => {
    const logs = [join(dir, 'f1.log'), join(dir, 'f2.log')];
    const frozen = await worker('f1');
    client = new BufferClient({ redis: redis.url, namespace: 'freeze' });
    const keys = ['K0', 'K1', 'K2', 'K3'];
    let seq = 0;
    for (let round = 0; round < 10; round++) {
      for (const key of keys) await client.durable.publish('work', { seq: seq++, sleepMs: RUN_MS }, { key });
    }
    // f1 reads 32 of the 40 (maxInFlight is 32 by default) and runs one per key at a time.
    // Frozen mid-handler: while all four runs of a round are under way, none started more than
    // JUST_STARTED_MS ago (so a pause of the test process before the signal of up to
    // RUN_MS - JUST_STARTED_MS is harmless). Frozen at a round's turn instead, between the
    // library's last ownership check and the handler's first line, a run would log its start only
    // after the thaw, after the claimer's runs of its key: a handler frozen at its very start, which
    // no library can tell from one frozen a line later (docs/reliability.md, "Ownership is checked
    // in Redis").
    await waitFor('f1 running a round of keyed entries, just started', () => {
      const open = runsOf(readLogs(logs)).filter((run) => run.end === undefined);
      const since = Date.now() - JUST_STARTED_MS;
      return open.length === keys.length && open.every((run) => run.start >= since);
    });
    // Frozen before the claimer starts: a process start can take longer than f1 needs to run all
    // 40 entries (5 s) on a loaded machine, and the claimer would then find nothing to claim.
    frozen.signal('SIGSTOP');
    const stoppedAt = Date.now();
    await worker('f2');
    // Past claimIdle, f2 claims what f1 held and runs it; f1 is thawed while f2 is still at work.
    await waitFor('f2 running claimed entries', () => runsOf(readLogs([logs[1]!])).length >= keys.length * 2, 15_000);
    frozen.signal('SIGCONT');
    const thawedAt = Date.now();
    await waitFor('every entry handled', () => new Set(runsOf(readLogs(logs)).filter((run) => run.ok).map((run) => run.seq)).size === seq, 30_000);
    await sleep(300);
    await Promise.all(processes.map((instance) => instance.stop('SIGTERM')));
    const lines = readLogs(logs);
    const runs = runsOf(lines);
    const outages: Outage[] = [{ consumer: 'f1', from: stoppedAt, to: thawedAt }];
    expect(keyViolations(runs, outages)).toEqual([]);
    const stats = Object.fromEntries(lines.filter((line) => line.e === 'closed').map((line) => [line.c, line.stats!]));
    const f1 = stats.f1!;
    const mine = runs.filter((run) => run.consumer === 'f1');
    report('freeze', { f1, f2: stats.f2, f1Runs: mine.length });
    // The runs frozen mid-handler finished after the thaw; the claimer had taken their entries.
    expect(f1.lateAcksRefused).toBeGreaterThanOrEqual(1);
    // The counters say what the logs say.
    for (const [consumer, counters] of Object.entries(stats)) {
      const own = runs.filter((run) => run.consumer === consumer);
      expect({ consumer, runs: counters.runs, succeeded: counters.succeeded, failed: counters.failed }).toEqual({
        consumer,
        runs: own.length,
        succeeded: own.filter((run) => run.ok === true).length,
        failed: own.filter((run) => run.ok === false).length,
      });
      expect(counters.handled! + counters.lateAcksRefused!).toBe(counters.succeeded);
    }
    // Each entry acknowledged once: the accepted acknowledgements add up to the entries.
    expect(Object.values(stats).reduce((sum, counters) => sum + counters.handled!, 0)).toBe(seq);
  }, 90_000);
});
