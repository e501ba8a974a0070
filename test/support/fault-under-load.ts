import type { BufferClient } from 'nestjs-redis-buffer';
import { reportFigures } from './captured-logs.js';
import type { InstanceProcess } from './instances.js';
import { startLoads, totalErrors, type LoadProcess, type LoadStats } from './load.js';
import { sleep } from './raw-redis.js';

// What "ends by its deadline plus a small margin" means here, on a loaded 2-core machine.
export const MARGIN_MS = 500;

/** One line the docs' figures come from: `FAULT <name> <json>` (TEST_LOGS=1 or TEST_FIGURES, see reportFigures). */
export function report(name: string, values: Record<string, unknown>): void {
  reportFigures('FAULT', name, values);
}

/** Every request ended by deadline + margin, typed outcomes only, no process trouble. */
export function expectWellBehaved(finals: readonly LoadStats[]): void {
  for (const final of finals) {
    expect(final.maxOverrunMs).toBeLessThan(MARGIN_MS);
    expect(final.open).toBe(0);
    expect(final.unhandledRejections).toBe(0);
    expect(final.uncaughtExceptions).toBe(0);
    for (const code of Object.keys(final.errors)) expect(code).toMatch(/^(BUFFER_[A-Z_]+|partial:timeout)$/);
  }
}

/** Polls until a `whoami` reaches all of `instanceIds` again; resolves with the time it did. */
export async function allAnswer(client: BufferClient, count: number, timeoutMs: number): Promise<number> {
  let last = '';
  for (let deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(20)) {
    const result = await client.gather<string>('whoami', null, { timeout: 1000 }).catch((error: Error) => error);
    if (!(result instanceof Error) && result.completedBy === 'all' && result.expected === count && result.replies.length === count) return Date.now();
    last = result instanceof Error ? `${result.name}: ${result.message}` : JSON.stringify({ ...result, replies: result.replies.map((r) => r.instanceId) });
  }
  throw new Error(`the ${count} instances did not all answer within ${timeoutMs} ms; last: ${last}`);
}

export interface FaultScenario {
  readonly name: string;
  readonly connection: object;
  readonly namespace: string;
  /** A client of the namespace, for checking that every instance answers again. */
  readonly client: BufferClient;
  readonly instances: readonly InstanceProcess[];
  /** Injects the fault; may resolve with figures of its own for the report (when a failover happened…). */
  readonly fault: () => Promise<void | Record<string, unknown>>;
  readonly recoveryBoundMs: number;
  /** Per-request timeout of the load. @default 1000 */
  readonly timeout?: number;
}

/**
 * Runs `fault` while two caller processes keep 4 requests each in flight, waits until callers
 * succeed again and every instance answers, then checks how requests ended (by their deadline,
 * completed or with a typed error), that no process spun (error events and CPU), and reports the
 * figures.
 */
export async function faultUnderLoad(scenario: FaultScenario): Promise<void> {
  const { name, connection, namespace, client, instances, fault, recoveryBoundMs } = scenario;
  const timeout = scenario.timeout ?? 1000;
  const loads: LoadProcess[] = await startLoads([
    { id: `${name}-1`, connection, namespace, timeout, concurrency: 4 },
    { id: `${name}-2`, connection, namespace, timeout, concurrency: 4 },
  ]);
  try {
    await Promise.all(loads.map((load) => load.until((s) => s.ok >= 50, 15_000, '50 successes')));
    const before = loads.map((load) => ({ ...load.stats, errors: { ...load.stats.errors } }));
    const instanceCpuBefore = instances.map((instance) => instance.cpuMs());

    const faultAt = Date.now();
    const faultFigures = (await fault()) ?? {};
    const allBackAt = await allAnswer(client, instances.length, recoveryBoundMs).catch((error: Error) => {
      throw new Error(`${error.message}\n${instances.map((instance) => `--- ${instance.id}:\n${instance.logs.slice(-3000)}`).join('\n')}`);
    });
    // Every caller recovered: a success after every instance was back, and none failing since.
    await Promise.all(loads.map((load) => load.until((s) => s.lastOkAt > allBackAt && !s.failing, recoveryBoundMs, 'a success after the fault')));
    const elapsedMs = Date.now() - faultAt;
    const instanceCpuMs = instances.map((instance, i) => Math.round(instance.cpuMs() - instanceCpuBefore[i]!));
    await sleep(300);
    const finals = await Promise.all(loads.splice(0).map((load) => load.stop()));

    expectWellBehaved(finals);
    for (const [i, final] of finals.entries()) expect(final.ok).toBeGreaterThan(before[i]!.ok + 10);
    // No busy loop while Redis fails over: the Redis errors a caller sees are few (reconnection
    // attempts back off), and over an outage of seconds each process stays well under half a core
    // (callers keep failing fast and retrying meanwhile).
    for (const [i, final] of finals.entries()) expect(final.redisErrors - before[i]!.redisErrors).toBeLessThan(50);
    if (elapsedMs >= 2000) {
      for (const cpu of instanceCpuMs) expect(cpu / elapsedMs).toBeLessThan(0.5);
      for (const [i, final] of finals.entries()) expect((final.cpuMs - before[i]!.cpuMs) / elapsedMs).toBeLessThan(0.6);
    }
    for (const instance of instances) {
      expect(instance.exited).toBe(false);
      expect(instance.logs).not.toContain('UNHANDLED_REJECTION');
    }
    const errorsSince = finals.map((f, i) => ({
      ...f,
      errors: Object.fromEntries(Object.entries(f.errors).map(([code, n]) => [code, n - (before[i]!.errors[code] ?? 0)]).filter(([, n]) => (n as number) > 0)),
    }));
    report(name, {
      // From the fault to the first success after the last failure (0: this caller never failed).
      callerRecoveryMs: finals.map((stats) => Math.max(faultAt, ...stats.outages.filter((outage) => outage.to > faultAt).map((outage) => outage.to)) - faultAt),
      allInstancesBackMs: allBackAt - faultAt,
      // Each caller's runs of failures after the fault, in ms from the fault: [first failure, next success].
      outages: finals.map((f) => f.outages.filter((o) => o.to > faultAt).map((o) => [o.from - faultAt, o.to - faultAt])),
      requests: finals.reduce((sum, f, i) => sum + f.sent - before[i]!.sent, 0),
      ok: finals.reduce((sum, f, i) => sum + f.ok - before[i]!.ok, 0),
      errors: totalErrors(errorsSince),
      maxOverrunMs: Math.max(...finals.map((f) => f.maxOverrunMs)),
      callerRedisErrors: finals.map((f, i) => f.redisErrors - before[i]!.redisErrors),
      instanceCpuMs,
      callerCpuMs: finals.map((f, i) => f.cpuMs - before[i]!.cpuMs),
      elapsedMs,
      ...faultFigures,
    });
  } finally {
    for (const load of loads) await load.stop();
  }
}
