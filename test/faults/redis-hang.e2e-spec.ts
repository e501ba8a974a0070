// Fault suite: Redis hung (SIGSTOP) or paused (CLIENT PAUSE ALL / WRITE) under load: faults that
// close no socket. Requests end at their deadline blaming Redis, never as whole results with instances
// missing; health goes down while Redis does not answer and up again once it does.
// The figures reported with TEST_LOGS=1 ("FAULT ...") are the ones in docs/reliability.md.
import { BufferClient, BufferHealthIndicator, RedisBufferTransport, type GatherResult } from 'nestjs-redis-buffer';
import { InstanceSpawner } from '../support/instances.js';
import { FAULT_APP } from '../support/load.js';
import { rawRedis, sleep } from '../support/raw-redis.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { quietLogs, reportFault } from '../support/captured-logs.js';
import { MARGIN_MS } from '../support/fault-under-load.js';

quietLogs([/Redis/]);
const namespace = 'fault-hang';
const TIMEOUT = 1500;
const IN_FLIGHT = 20;

interface Ended {
  readonly startedAt: number;
  readonly endedAt: number;
  readonly result?: GatherResult<string>;
  readonly error?: Error;
}

interface HealthSample {
  readonly startedAt: number;
  readonly endedAt: number;
  readonly up: boolean;
}

describe('fault: Redis hung or paused (no socket closes)', () => {
  let redis: TestRedis;
  let client: BufferClient;
  let transport: RedisBufferTransport;
  let health: BufferHealthIndicator;
  const instances = new InstanceSpawner(() => redis.url, namespace, FAULT_APP);

  beforeAll(async () => {
    redis = await startRedis();
    await Promise.all(['h1', 'h2', 'h3'].map((id) => instances.spawn(id)));
    client = new BufferClient({ redis: redis.url, namespace, timeout: TIMEOUT });
    await client.connect();
    // An instance in this process too, so that health covers an instance's connections.
    transport = new RedisBufferTransport({ redis: redis.url, namespace, instanceId: 'h-local' });
    await new Promise<void>((resolve, reject) => void transport.listen((error?: unknown) => (error === undefined ? resolve() : reject(error as Error))));
    health = new BufferHealthIndicator(client).watch(transport);
  }, 60_000);

  afterAll(async () => {
    await client?.close();
    await transport?.close();
    await instances.stopAll();
    await redis?.stop();
  });

  /**
   * Keeps IN_FLIGHT gathers of `whoami` in flight and health checked back to back, injects the fault,
   * waits for its end (`release` resolves when Redis answers again), then checks every outcome.
   */
  async function underFault(name: string, inject: () => Promise<void>, release: () => Promise<void>): Promise<void> {
    const ended: Ended[] = [];
    const samples: HealthSample[] = [];
    let running = true;
    const worker = async (): Promise<void> => {
      while (running) {
        const startedAt = Date.now();
        const outcome = await client.gather<string>('whoami', null).then(
          (result): { result: GatherResult<string>; error?: undefined } => ({ result }),
          (error: Error): { result?: undefined; error: Error } => ({ error }),
        );
        ended.push({ startedAt, endedAt: Date.now(), ...outcome });
        if (outcome.error !== undefined) await sleep(20);
      }
    };
    const prober = async (): Promise<void> => {
      while (running) {
        const startedAt = Date.now();
        const check = await health.isHealthy('buffer');
        samples.push({ startedAt, endedAt: Date.now(), up: check.buffer.status === 'up' });
        await sleep(50);
      }
    };
    const loops = [...Array.from({ length: IN_FLIGHT }, worker), prober()];
    await sleep(600);
    const faultAt = Date.now();
    await inject();
    // The fault is in effect from here: a CLIENT PAUSE applies when Redis runs it, which a loaded
    // machine can delay, and whatever completed before then completed whole.
    const inEffectAt = Date.now();
    await release();
    const releasedAt = Date.now();
    await sleep(TIMEOUT + 1000);
    running = false;
    await Promise.all(loops);

    const results = ended.filter((entry) => entry.result !== undefined).map((entry) => ({ ...entry, result: entry.result! }));
    // Never a whole-looking result with a live instance unheard.
    const falselyWhole = results.filter(({ result }) => result.completedBy === 'all' && result.missing.length === 0 && result.replies.length < 3);
    expect(falselyWhole.map(({ result }) => ({ ...result, replies: result.replies.map((r) => r.instanceId) }))).toEqual([]);
    // Redis's fault is never blamed on an instance.
    const blamed = results.filter(({ result }) => Object.values(result.missingReasons).some((reason) => reason === 'silent' || reason === 'unreachable' || reason === 'left'));
    expect(blamed.map(({ result }) => result.missingReasons)).toEqual([]);
    // Every request ended by its deadline plus a margin, with a result or a typed error.
    for (const entry of ended) expect(entry.endedAt - entry.startedAt).toBeLessThan(TIMEOUT + MARGIN_MS);
    for (const entry of ended) if (entry.error !== undefined) expect((entry.error as { code?: string }).code).toMatch(/^BUFFER_/);
    // What ended while Redis did not answer says so, and names every instance.
    const duringFault = results.filter(({ startedAt, endedAt }) => endedAt > inEffectAt + 100 && endedAt < releasedAt && startedAt < releasedAt);
    expect(duringFault.length).toBeGreaterThan(0);
    for (const { result } of duringFault) {
      expect(result).toMatchObject({ completedBy: 'timeout', redis: 'unanswered' });
      expect([...result.missing].sort()).toEqual(['h1', 'h2', 'h3'].filter((id) => !result.replies.some((r) => r.instanceId === id)).sort());
      for (const id of result.missing) expect(result.missingReasons[id]).toBe('redis-unanswered');
    }
    // Whole again after the fault.
    const after = results.filter(({ startedAt }) => startedAt > releasedAt + 200);
    expect(after.length).toBeGreaterThan(0);
    for (const { result } of after) expect(result).toMatchObject({ completedBy: 'all', missing: [], expected: 3 });

    // Health: down within ~2 s of the fault, up within ~1 s of recovery.
    const firstDown = samples.find((sample) => sample.startedAt >= faultAt && !sample.up);
    const firstUpAfter = samples.find((sample) => sample.endedAt >= releasedAt && sample.up);
    expect(firstDown).toBeDefined();
    expect(firstUpAfter).toBeDefined();
    const downAfterMs = firstDown!.endedAt - faultAt;
    const upAfterMs = firstUpAfter!.endedAt - releasedAt;
    expect(downAfterMs).toBeLessThan(2000);
    expect(upAfterMs).toBeLessThan(1000);
    const byOutcome: Record<string, number> = {};
    for (const { result } of results) byOutcome[`${result.completedBy}/${result.redis}`] = (byOutcome[`${result.completedBy}/${result.redis}`] ?? 0) + 1;
    reportFault(name, { gathers: ended.length, byOutcome, errors: ended.length - results.length, healthDownAfterMs: downAfterMs, healthUpAfterMs: upAfterMs, faultMs: releasedAt - faultAt });
  }

  it('redis-server SIGSTOPped for 3 s: gathers in flight end at their deadline as timeouts blaming Redis; health goes down and comes back', async () => {
    await underFault(
      'redis-sigstop-3s',
      async () => redis.signal('SIGSTOP'),
      async () => {
        await sleep(3000);
        redis.signal('SIGCONT');
      },
    );
  }, 30_000);

  for (const mode of ['ALL', 'WRITE'] as const) {
    it(`CLIENT PAUSE 2000 ${mode}: the same, and nobody is called silent`, async () => {
      const admin = rawRedis(redis.url);
      try {
        await underFault(
          `redis-client-pause-${mode.toLowerCase()}`,
          async () => void (await admin.call('CLIENT', 'PAUSE', '2000', mode)),
          // The pause lifts by itself; a write answered means Redis answers again.
          async () => {
            await sleep(1900);
            await admin.publish(`${namespace}:probe`, 'released?');
          },
        );
      } finally {
        admin.disconnect();
      }
    }, 30_000);
  }
});
