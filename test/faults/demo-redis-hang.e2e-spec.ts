// Fault suite: the demo app while redis-server is hung (SIGSTOP). A lookup that could not ask every
// instance never becomes a 404, and /health says Redis is not answering.
// The figures reported with TEST_LOGS=1 ("FAULT ...") are the ones in docs/reliability.md.
import { randomBytes } from 'node:crypto';
import { sleep } from '../support/raw-redis.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { ResourceServiceProcess, startResourceServices, stopResourceServices } from '../support/resource-service.js';
import { reportFault } from '../support/captured-logs.js';

const LOOKUP_TIMEOUT_MS = 1500;

async function get(url: string): Promise<{ status: number; body: Record<string, unknown>; elapsedMs: number }> {
  const startedAt = Date.now();
  const response = await fetch(url);
  return { status: response.status, body: (await response.json()) as Record<string, unknown>, elapsedMs: Date.now() - startedAt };
}

describe('fault: the demo while Redis is hung', () => {
  let redis: TestRedis;
  let instances: ResourceServiceProcess[];
  const namespace = `demo-hang-${randomBytes(4).toString('hex')}`;

  beforeAll(async () => {
    redis = await startRedis();
    instances = await startResourceServices(redis.url, namespace, undefined, { LOOKUP_TIMEOUT_MS: String(LOOKUP_TIMEOUT_MS) });
  }, 60_000);

  afterAll(async () => {
    redis?.signal('SIGCONT');
    if (instances) await stopResourceServices(instances);
    await redis?.stop();
  });

  it('a lookup during the hang answers 503 "could not ask every instance", never 404; health is down, and both recover', async () => {
    const one = instances.find((instance) => instance.name === 'one')!;
    // `e` is held by instance three: instance one must ask everyone.
    const before = await get(`${one.url}/resources/e`);
    expect(before.status).toBe(200);

    redis.signal('SIGSTOP');
    const stoppedAt = Date.now();
    try {
      const [lookup, unknown, health] = await Promise.all([get(`${one.url}/resources/x-${randomBytes(3).toString('hex')}`), get(`${one.url}/resources/y-${randomBytes(3).toString('hex')}`), sleep(300).then(() => get(`${one.url}/health`))]);
      for (const answer of [lookup, unknown]) {
        expect(answer.status).toBe(503);
        expect(answer.body).toMatchObject({ redis: 'unanswered', completedBy: 'timeout', outcome: 'partial' });
        expect(String(answer.body.message)).toContain('Redis did not answer');
        expect(answer.elapsedMs).toBeLessThan(LOOKUP_TIMEOUT_MS + 1000);
      }
      expect(health.status).toBe(503);
      reportFault('demo-redis-sigstop', { lookupStatus: lookup.status, lookupMs: lookup.elapsedMs, healthStatus: health.status, healthMs: health.elapsedMs, sinceStopMs: Date.now() - stoppedAt });
    } finally {
      redis.signal('SIGCONT');
    }
    let healthy: number | undefined;
    for (const deadline = Date.now() + 5000; healthy !== 200 && Date.now() < deadline; await sleep(100)) healthy = (await get(`${one.url}/health`)).status;
    expect(healthy).toBe(200);
    let found: number | undefined;
    for (const deadline = Date.now() + 5000; found !== 404 && Date.now() < deadline; await sleep(100)) found = (await get(`${one.url}/resources/z-${randomBytes(3).toString('hex')}`)).status;
    // Once Redis answers, an unknown resource is a 404 again: every instance said no.
    expect(found).toBe(404);
  }, 30_000);
});
