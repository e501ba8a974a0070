// Fault suite: instances dying mid-reply, graceful shutdown, and backpressure on both sides.
// The figures reported with TEST_LOGS=1 ("FAULT ...") are the ones in docs/reliability.md.
import { BufferClient, InstancesMissingError, TooManyRequestsError } from 'nestjs-redis-buffer';
import { lastValueFrom, toArray } from 'rxjs';
import { InstanceProcess, InstanceSpawner, stopAll } from '../support/instances.js';
import { FAULT_APP, startLoads, totalErrors, type LoadProcess } from '../support/load.js';
import { rawRedis, sleep } from '../support/raw-redis.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { quietLogs, reportFault } from '../support/captured-logs.js';


// The library's warnings that these faults provoke on purpose: captured and asserted, not printed.
quietLogs([]);
const namespace = 'fault-inst';
const MARGIN_MS = 500;


describe('fault: instances', () => {
  let redis: TestRedis;
  let client: BufferClient;
  const instances = new InstanceSpawner(() => redis.url, namespace, FAULT_APP);
  const spawn = (instanceId: string, env?: Record<string, string>): Promise<InstanceProcess> => instances.spawn(instanceId, env);

  beforeAll(async () => {
    redis = await startRedis();
    client = new BufferClient({ redis: redis.url, namespace, timeout: 3000 });
    await client.connect();
  });

  afterAll(async () => {
    await client?.close();
    await instances.stopAll();
    await redis?.stop();
  });

  it('an instance SIGKILLed in the middle of a streamed reply: the caller stops waiting for it within the liveness bound, and the result names it', async () => {
    const [s1, s2, s3] = await Promise.all([spawn('s1'), spawn('s2'), spawn('s3')]);
    let loads: LoadProcess[] = await startLoads([
      { id: 'inst-load-1', redisUrl: redis.url, namespace, timeout: 1000, concurrency: 4 },
      { id: 'inst-load-2', redisUrl: redis.url, namespace, timeout: 1000, concurrency: 4 },
    ]);
    try {
      await Promise.all(loads.map((load) => load.until((s) => s.ok >= 50, 10_000, '50 successes')));
      const started = Date.now();
      const gathering = client.gather<{ instance: string; n: number }>('stream', { count: 20, every: 50 }, { timeout: 2500 });
      const scattering = lastValueFrom(client.scatter<{ instance: string; n: number }>('stream', { count: 20, every: 50 }, { timeout: 2500 }).pipe(toArray())).catch(
        (e: unknown) => e,
      );
      await sleep(400);
      await s3!.stop('SIGKILL');
      const result = await gathering;
      const elapsed = Date.now() - started;
      expect(result.completedBy).toBe('all');
      expect(result.expected).toBe(3);
      expect(result.finished).toBe(2);
      expect(result.missing).toEqual(['s3']);
      expect(result.missingReasons).toEqual({ s3: 'unreachable' });
      const fromKilled = result.replies.filter((r) => r.instanceId === 's3').length;
      expect(fromKilled).toBeGreaterThan(0);
      expect(fromKilled).toBeLessThan(20);
      expect(result.replies.filter((r) => r.instanceId === 's1')).toHaveLength(20);
      expect(result.replies.filter((r) => r.instanceId === 's2')).toHaveLength(20);
      // The streams of s1 and s2 take 1 s; s3's absence is known within the liveness bound (1 s).
      expect(elapsed).toBeLessThan(2500);
      const scattered = await scattering;
      expect(scattered).toBeInstanceOf(InstancesMissingError);
      expect((scattered as InstancesMissingError).expected).toBe(3);
      expect((scattered as InstancesMissingError).finished).toBe(2);
      expect((scattered as InstancesMissingError).missing).toEqual(['s3']);

      const finals = await Promise.all(loads.map((load) => load.stop()));
      loads = [];
      for (const final of finals) {
        expect(final.maxOverrunMs).toBeLessThan(MARGIN_MS);
        expect(final.unhandledRejections + final.uncaughtExceptions).toBe(0);
        for (const code of Object.keys(final.errors)) expect(code).toMatch(/^(BUFFER_[A-Z_]+|partial:timeout)$/);
      }
      for (const instance of [s1!, s2!]) expect(instance.exited).toBe(false);
      reportFault('instance-sigkill-mid-stream', {
        timeoutMs: 2500,
        elapsedMs: elapsed,
        missing: result.missingReasons,
        expected: result.expected,
        finished: result.finished,
        repliesFromKilled: fromKilled,
        loadRequests: finals.reduce((sum, f) => sum + f.sent, 0),
        loadErrors: totalErrors(finals),
      });
    } finally {
      for (const load of loads) await load.stop();
      await stopAll([s1!, s2!]);
    }
  }, 60_000);

  it('graceful shutdown: stops taking requests at once, lets the handler in flight finish, leaves nothing subscribed', async () => {
    const [g1, g2] = await Promise.all([spawn('g1', { SHUTDOWN_TIMEOUT: '3000' }), spawn('g2')]);
    const admin = rawRedis(redis.url);
    try {
      const inFlight = client.gather<string>('slow', 800, { timeout: 3000 });
      await sleep(150);
      const stopping = g1!.stop('SIGTERM');
      // Unsubscribed at once, while its handler still runs.
      let numsub = 2;
      for (let deadline = Date.now() + 1000; numsub !== 1 && Date.now() < deadline; await sleep(10)) {
        numsub = Number(((await admin.pubsub('NUMSUB', `${namespace}:req:slow`)) as [string, number])[1]);
      }
      const unsubscribedWhileRunning = !g1!.exited;
      expect(numsub).toBe(1);
      expect(unsubscribedWhileRunning).toBe(true);
      const during = await client.gather<string>('whoami', null);
      expect(during.replies.map((r) => r.data)).toEqual(['g2']);
      // The request in flight still gets g1's answer.
      const result = await inFlight;
      expect(result.completedBy).toBe('all');
      expect(result.replies.map((r) => r.data).sort()).toEqual(['g1', 'g2']);
      await stopping;
      // Nothing of g1's is left on the server: no connection, no subscription.
      const clients = (await admin.client('LIST')) as string;
      expect(clients).not.toContain('name=rb:g1:');
      const channels = (await admin.pubsub('CHANNELS', `${namespace}:*`)) as string[];
      expect(channels).not.toContain(`${namespace}:direct:g1`);
      expect(g1!.logs).not.toContain('still running');

      // Bounded: a handler slower than shutdownTimeout does not hold the process.
      const g3 = await spawn('g3', { SHUTDOWN_TIMEOUT: '500' });
      void client.gather('slow', 5000, { to: 'g3', timeout: 6000 }).catch(() => undefined);
      await sleep(150);
      const stopAt = Date.now();
      await g3.stop('SIGTERM');
      const boundedMs = Date.now() - stopAt;
      expect(boundedMs).toBeLessThan(500 + 2000);
      expect(g3.logs).toContain('Stopping 1 handlers still running after shutdownTimeout (500 ms)');
      reportFault('graceful-shutdown', { inFlightAnsweredDuringShutdown: true, numsubWhileDraining: numsub, boundedShutdownMs: boundedMs });
    } finally {
      admin.disconnect();
      await stopAll([g1!, g2!]);
    }
  }, 60_000);

  it('backpressure on the client: past maxInFlight a request is refused at once with TooManyRequestsError', async () => {
    const b1 = await spawn('b1');
    const bounded = new BufferClient({ redis: redis.url, namespace, maxInFlight: 5, timeout: 3000 });
    try {
      const first = Array.from({ length: 5 }, () => bounded.gather('slow', 300));
      const started = Date.now();
      const error = await bounded.gather('slow', 300).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TooManyRequestsError);
      expect((error as TooManyRequestsError).code).toBe('BUFFER_TOO_MANY_REQUESTS');
      expect((error as Error).message).toContain('maxInFlight');
      expect(Date.now() - started).toBeLessThan(50);
      expect(bounded.stats.requests).toBe(5);
      await Promise.all(first);
      expect((await bounded.gather('whoami', null)).replies).toHaveLength(1);
    } finally {
      await bounded.close();
      await b1.stop();
    }
  });

  it('backpressure on the instance: maxConcurrentHandlers run, the queue waits, past it BUFFER_OVERLOADED at once', async () => {
    const c1 = await spawn('c1', { MAX_CONCURRENT_HANDLERS: '2', MAX_QUEUED_HANDLERS: '3' });
    try {
      const started = Date.now();
      const results = await Promise.all(
        Array.from({ length: 8 }, () => client.gather<string>('slow', 300, { to: 'c1', timeout: 3000 }).then((r) => ({ r, at: Date.now() - started }))),
      );
      const answered = results.filter(({ r }) => r.replies.length === 1);
      const refused = results.filter(({ r }) => r.errors.length === 1);
      expect(answered).toHaveLength(5);
      expect(refused).toHaveLength(3);
      for (const { r, at } of refused) {
        expect(r.errors[0]!.error).toMatchObject({ code: 'BUFFER_OVERLOADED', message: expect.stringContaining('maxConcurrentHandlers') });
        expect(at).toBeLessThan(250);
      }
      // 2 at once: the five answers come in three waves of ~300 ms.
      expect(Math.max(...answered.map(({ at }) => at))).toBeGreaterThanOrEqual(850);
      const stats = (await client.gather<Record<string, number>>('stats', null, { to: 'c1' })).replies[0]!.data;
      expect(stats.maxRunning).toBe(2);
      expect(stats.overloaded).toBe(3);
      reportFault('max-concurrent-handlers', { sent: 8, answered: answered.length, overloaded: refused.length, maxRunning: stats.maxRunning, lastAnswerMs: Math.max(...answered.map(({ at }) => at)) });
    } finally {
      await c1.stop();
    }
  }, 30_000);
});
