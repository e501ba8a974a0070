// A group must keep moving while one of its consumers lives: an orphaned head entry of a key, held
// by a consumer that was SIGKILLed, must not stall its key behind later entries that fill the next
// consumer's slots (they wait for their turn, and claiming must not wait for a free slot).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BufferClient } from 'nestjs-redis-buffer';
import type { InstanceProcess } from '../support/instances.js';
import { sleep } from '../support/raw-redis.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { report, waitFor } from '../support/durable.js';
import { startWorker, readLogs, runsOf } from './worker-log.js';

const CLAIM_IDLE = 1000;
const CLAIM_INTERVAL = 500;

describe('durable: no stall behind an orphaned head entry', () => {
  let redis: TestRedis;
  let dir: string;
  let client: BufferClient;
  const processes: InstanceProcess[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    dir = mkdtempSync(join(tmpdir(), 'rb-stall-'));
  });

  afterAll(async () => {
    await Promise.all(processes.map((instance) => instance.stop('SIGKILL')));
    await client?.close();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function worker(instanceId: string, durable: Record<string, unknown>): Promise<InstanceProcess> {
    const instance = await startWorker(redis.url, 'stall', dir, instanceId, { claimIdle: CLAIM_IDLE, claimInterval: CLAIM_INTERVAL, ...durable });
    processes.push(instance);
    return instance;
  }


  it('handles all 20 entries of a key, in order, within claimIdle + claimInterval of the kill, with maxInFlight 4', async () => {
    const first = await worker('w1', { maxInFlight: 1 });
    client = new BufferClient({ redis: redis.url, namespace: 'stall' });
    // The head hangs on its first attempt only: the consumer running it is then killed.
    for (let seq = 1; seq <= 20; seq++) await client.durable.publish('work', seq === 1 ? { seq, sleepMs: 600_000, sleepUntil: 1 } : { seq }, { key: 'K' });
    await waitFor('the head running on w1', () => runsOf(readLogs([join(dir, 'w1.log')])).some((run) => run.seq === 1));
    // w2 fills its 4 slots with entries 2 to 5, which wait for the head; then w1 dies.
    await worker('w2', { maxInFlight: 4 });
    await sleep(300);
    await first.stop('SIGKILL');
    const killedAt = Date.now();
    const done = (): number => runsOf(readLogs([join(dir, 'w2.log')])).filter((run) => run.ok === true).length;
    await waitFor('all 20 handled by w2', () => done() === 20, 20_000);
    const runs = runsOf(readLogs([join(dir, 'w2.log')]));
    expect(runs.map((run) => run.seq)).toEqual([...Array(20).keys()].map((index) => index + 1));
    const head = runs[0]!;
    expect(head.attempt).toBe(2);
    // w1 renewed the head at most claimIdle / 3 before it died, so it is claimable at most
    // claimIdle after the kill, and w2 must take it within claimInterval of that.
    report('stall', { headStartedAfterKill: head.start - killedAt, lastDoneAfterKill: runs[19]!.end! - killedAt });
    expect(head.start - killedAt).toBeLessThanOrEqual(CLAIM_IDLE + CLAIM_INTERVAL);
    // The 19 others follow at once (two scripts each).
    expect(runs[19]!.end! - head.start).toBeLessThanOrEqual(1000);
  }, 60_000);
});
