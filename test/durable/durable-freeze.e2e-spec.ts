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

  async function worker(instanceId: string, logAs = instanceId): Promise<InstanceProcess> {
    const instance = await startWorker(redis.url, 'freeze', dir, instanceId, { claimIdle: CLAIM_IDLE, claimInterval: 200 }, logAs);
    processes.push(instance);
    return instance;
  }

  /**
   * Freezes the process logging as `frozenAs` (instance id `frozenId`) mid-round, starts the one
   * logging as `claimerAs` (instance id `claimerId`), thaws the first while the second runs what it
   * claimed, and checks the handlers' logs and both processes' counters.
   */
  async function freezeAndClaim(frozenId: string, frozenAs: string, claimerId: string, claimerAs: string): Promise<void> {
    const logs = [join(dir, `${frozenAs}.log`), join(dir, `${claimerAs}.log`)];
    const frozen = await worker(frozenId, frozenAs);
    const keys = ['K0', 'K1', 'K2', 'K3'];
    const first = seq;
    for (let round = 0; round < 10; round++) {
      for (const key of keys) await client.durable.publish('work', { seq: seq++, sleepMs: RUN_MS }, { key });
    }
    // The first process reads 32 of the 40 (maxInFlight is 32 by default) and runs one per key at a time.
    // Frozen mid-handler: while all four runs of a round are under way, none started more than
    // JUST_STARTED_MS ago (so a pause of the test process before the signal of up to
    // RUN_MS - JUST_STARTED_MS is harmless). Frozen at a round's turn instead, between the
    // library's last ownership check and the handler's first line, a run would log its start only
    // after the thaw, after the claimer's runs of its key: a handler frozen at its very start, which
    // no library can tell from one frozen a line later (docs/reliability.md, "Ownership is checked
    // in Redis").
    await waitFor(`${frozenAs} running a round of keyed entries, just started`, () => {
      const open = runsOf(readLogs(logs)).filter((run) => run.end === undefined);
      const since = Date.now() - JUST_STARTED_MS;
      return open.length === keys.length && open.every((run) => run.start >= since);
    });
    // Frozen before the claimer starts: a process start can take longer than the first needs to run all
    // 40 entries (5 s) on a loaded machine, and the claimer would then find nothing to claim.
    frozen.signal('SIGSTOP');
    const stoppedAt = Date.now();
    await worker(claimerId, claimerAs);
    // Past claimIdle, the claimer claims what the frozen one held and runs it; that one is thawed while the claimer is still at work.
    await waitFor(`${claimerAs} running claimed entries`, () => runsOf(readLogs([logs[1]!])).length >= keys.length * 2, 15_000);
    frozen.signal('SIGCONT');
    const thawedAt = Date.now();
    const mineToo = (run: { seq: number }): boolean => run.seq >= first;
    await waitFor('every entry handled', () => new Set(runsOf(readLogs(logs)).filter((run) => run.ok && mineToo(run)).map((run) => run.seq)).size === seq - first, 30_000);
    await sleep(300);
    await Promise.all(processes.splice(0).map((instance) => instance.stop('SIGTERM')));
    const lines = readLogs(logs);
    const runs = runsOf(lines);
    const outages: Outage[] = [{ consumer: frozenAs, from: stoppedAt, to: thawedAt }];
    expect(keyViolations(runs, outages)).toEqual([]);
    const stats = Object.fromEntries(lines.filter((line) => line.e === 'closed').map((line) => [line.c, line.stats!]));
    const frozenStats = stats[frozenAs]!;
    report(`freeze-${frozenAs}`, { [frozenAs]: frozenStats, [claimerAs]: stats[claimerAs], frozenRuns: runs.filter((run) => run.consumer === frozenAs).length });
    // The runs frozen mid-handler finished after the thaw; the claimer had taken their entries.
    expect(frozenStats.lateAcksRefused).toBeGreaterThanOrEqual(1);
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
    expect(Object.values(stats).reduce((sum, counters) => sum + counters.handled!, 0)).toBe(seq - first);
  }

  let seq = 0;

  it('never runs two entries of a key side by side, refuses and counts the late acknowledgements', async () => {
    client = new BufferClient({ redis: redis.url, namespace: 'freeze' });
    await freezeAndClaim('f1', 'f1', 'f2', 'f2');
  }, 90_000);

  it('the same when the claimer is a new process under the frozen one\'s instanceId (a replaced pod): the group tells the two processes apart', async () => {
    await freezeAndClaim('t1', 't1-old', 't1', 't1-new');
  }, 90_000);
});
