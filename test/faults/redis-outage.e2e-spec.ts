// Fault suite: Redis going away under load (SIGKILL + restart, output-buffer disconnects) and
// Redis missing at start-up. The figures reported with TEST_LOGS=1 ("FAULT ...") are the ones in docs/reliability.md.
import { execFile } from 'node:child_process';
import { BufferClient, ConnectionLostError } from 'nestjs-redis-buffer';
import { InstanceProcess, startInstances, stopAll } from '../support/instances.js';
import { FAULT_APP, startLoads, totalErrors, type LoadProcess } from '../support/load.js';
import { rawRedis, sleep } from '../support/raw-redis.js';
import { freePort, startRedis, type TestRedis } from '../support/redis-server.js';
import { quietLogs, reportFault } from '../support/captured-logs.js';
import { expectWellBehaved, MARGIN_MS } from '../support/fault-under-load.js';


// The library's warnings that these faults provoke on purpose: captured and asserted, not printed.
const logs = quietLogs([/^Redis: connect ECONNREFUSED/, /similar messages suppressed/]);
const namespace = 'fault';
const TIMEOUT = 1000;


async function instanceStats(client: BufferClient, to: string): Promise<Record<string, number>> {
  const result = await client.gather<Record<string, number>>('stats', null, { to, timeout: 2000 });
  return result.replies[0]!.data;
}

async function subscriberClientId(redisUrl: string, name: string): Promise<string | undefined> {
  const admin = rawRedis(redisUrl);
  try {
    const list = (await admin.client('LIST')) as string;
    return list.split('\n').find((line) => line.includes(`name=${name} `))?.match(/id=(\d+)/)?.[1];
  } finally {
    admin.disconnect();
  }
}

describe('fault: Redis goes away under load', () => {
  let redis: TestRedis;
  let instances: InstanceProcess[];
  let loads: LoadProcess[];
  let client: BufferClient;

  beforeAll(async () => {
    redis = await startRedis();
    instances = await startInstances(
      ['i1', 'i2', 'i3'].map((instanceId) => ({ instanceId, redisUrl: redis.url, namespace, script: FAULT_APP, env: { CONNECT_TIMEOUT: '5000' } })),
    );
    client = new BufferClient({ redis: redis.url, namespace, timeout: 2000 });
    await client.connect();
  }, 60_000);

  afterAll(async () => {
    await client?.close();
    for (const load of loads ?? []) await load.stop();
    await stopAll(instances ?? []);
    await redis?.stop();
  });

  it('Redis SIGKILLed and restarted on the same port: every request ends in time, typed; everything recovers by itself', async () => {
    loads = await startLoads([
      { id: 'load-1', redisUrl: redis.url, namespace, timeout: TIMEOUT, concurrency: 8 },
      { id: 'load-2', redisUrl: redis.url, namespace, timeout: TIMEOUT, concurrency: 8 },
    ]);
    await Promise.all(loads.map((load) => load.until((s) => s.ok >= 100, 10_000, '100 successes')));
    const okBefore = loads.map((load) => load.stats.ok);

    const killedAt = Date.now();
    await redis.kill();
    await sleep(1000);
    const restartedAt = Date.now();
    await redis.restart();
    const listeningAt = Date.now();

    // Callers recover without anyone doing anything.
    const recovered = await Promise.all(loads.map((load) => load.until((s) => s.lastOkAt > restartedAt, 15_000, 'a success after the restart')));
    const recoveryMs = recovered.map((stats) => stats.outages.find((outage) => outage.to > restartedAt)!.to - listeningAt);
    // All three instances re-subscribed: a request reaches every one of them again.
    let allBackAt = 0;
    for (let deadline = Date.now() + 15_000; Date.now() < deadline; await sleep(20)) {
      const result = await client.gather<string>('whoami', null, { timeout: 1000 }).catch(() => undefined);
      if (result?.expected === 3 && result.replies.length === 3) {
        allBackAt = Date.now();
        break;
      }
    }
    expect(allBackAt).toBeGreaterThan(0);
    await sleep(500);
    const finals = await Promise.all(loads.map((load) => load.stop()));
    loads = [];

    expectWellBehaved(finals);
    // This process's client saw Redis go away too, and said so.
    expect(logs.warnings().some((message) => message.startsWith('Redis: connect ECONNREFUSED'))).toBe(true);
    for (const [index, final] of finals.entries()) expect(final.ok).toBeGreaterThan(okBefore[index]! + 10);
    for (const instance of instances) {
      expect(instance.exited).toBe(false);
      expect(instance.logs).not.toContain('UNHANDLED_REJECTION');
    }
    for (const id of ['i1', 'i2', 'i3']) expect((await instanceStats(client, id)).reconnects).toBeGreaterThanOrEqual(1);
    reportFault('redis-restart', {
      downMs: restartedAt - killedAt,
      callerRecoveryMsAfterRedisListening: recoveryMs,
      allInstancesBackMsAfterRedisListening: allBackAt - listeningAt,
      requests: finals.reduce((sum, f) => sum + f.sent, 0),
      ok: finals.reduce((sum, f) => sum + f.ok, 0),
      errors: totalErrors(finals),
      maxOverrunMs: Math.max(...finals.map((f) => f.maxOverrunMs)),
    });
  }, 60_000);

  it('a subscriber disconnected for exceeding client-output-buffer-limit pubsub is detected, reconnected and resubscribed', async () => {
    loads = await startLoads([
      { id: 'load-3', redisUrl: redis.url, namespace, timeout: TIMEOUT, concurrency: 4 },
      { id: 'load-4', redisUrl: redis.url, namespace, timeout: TIMEOUT, concurrency: 4 },
    ]);
    await Promise.all(loads.map((load) => load.until((s) => s.ok >= 50, 10_000, '50 successes')));
    const admin = rawRedis(redis.url);
    const before = await instanceStats(client, 'i1');
    const subscriberBefore = await subscriberClientId(redis.url, 'rb:i1:sub');
    try {
      await admin.config('SET', 'client-output-buffer-limit', 'pubsub 64kb 32kb 1');
      // A slow consumer: i1 is frozen (SIGSTOP) while a flood of 2,000 x 4 KB arrives on a request
      // channel it subscribes; its unread output buffer passes 64 KB and Redis disconnects it.
      instances[0]!.signal('SIGSTOP');
      const floodAt = Date.now();
      const junk = JSON.stringify({ v: 1, kind: 'junk', pad: 'x'.repeat(4000) });
      const pipeline = admin.pipeline();
      for (let i = 0; i < 2000; i++) pipeline.publish(`${namespace}:req:whoami`, junk);
      await pipeline.exec();
      await sleep(200);
      instances[0]!.signal('SIGCONT');
      await admin.config('SET', 'client-output-buffer-limit', 'pubsub 32mb 8mb 60');

      let resubscribedAt = 0;
      for (let deadline = Date.now() + 15_000; Date.now() < deadline; await sleep(20)) {
        const result = await client.gather<string>('whoami', null, { timeout: 1000 }).catch(() => undefined);
        const stats = await instanceStats(client, 'i1').catch(() => undefined);
        if (result?.expected === 3 && result.replies.length === 3 && stats !== undefined && stats.reconnects > before.reconnects) {
          resubscribedAt = Date.now();
          break;
        }
      }
      expect(resubscribedAt).toBeGreaterThan(0);
      // Redis closed the subscriber connection: a new one (new client id) carries the subscriptions.
      expect(await subscriberClientId(redis.url, 'rb:i1:sub')).not.toBe(subscriberBefore);
      await sleep(300);
      const finals = await Promise.all(loads.map((load) => load.stop()));
      loads = [];
      expectWellBehaved(finals);
      expect(instances[0]!.logs).toContain('Redis connection lost; reconnecting');
      reportFault('output-buffer-limit', {
        resubscribedMsAfterFlood: resubscribedAt - floodAt,
        requests: finals.reduce((sum, f) => sum + f.sent, 0),
        ok: finals.reduce((sum, f) => sum + f.ok, 0),
        errors: totalErrors(finals),
        maxOverrunMs: Math.max(...finals.map((f) => f.maxOverrunMs)),
      });
    } finally {
      await admin.config('SET', 'client-output-buffer-limit', 'pubsub 32mb 8mb 60').catch(() => undefined);
      admin.disconnect();
    }
  }, 60_000);
});

describe('fault: Redis unreachable at start-up', () => {
  it('listen waits up to connectTimeout, reports "connecting" on the status observable, and starts once Redis appears', async () => {
    const redis = await startRedis();
    await redis.kill();
    const starting = InstanceProcess.start({ instanceId: 'late', redisUrl: redis.url, namespace: 'fault-start', script: FAULT_APP, env: { CONNECT_TIMEOUT: '10000' } });
    let instance: InstanceProcess | undefined;
    const client = new BufferClient({ redis: redis.url, namespace: 'fault-start', timeout: 2000 });
    try {
      await sleep(1500);
      const redisAt = Date.now();
      await redis.restart();
      instance = await starting;
      const readyMs = Date.now() - redisAt;
      const statuses = [...instance.logs.matchAll(/STATUS late (\w+)/g)].map((m) => m[1]);
      expect(statuses[0]).toBe('connecting');
      expect(statuses).toContain('connected');
      expect(statuses.indexOf('connecting')).toBeLessThan(statuses.indexOf('connected'));
      const result = await client.gather<string>('whoami', null);
      expect(result.replies.map((r) => r.data)).toEqual(['late']);
      reportFault('startup-redis-late', { readyMsAfterRedisListening: readyMs, statuses });
    } finally {
      await client.close();
      await instance?.stop();
      await starting.then((i) => i.stop()).catch(() => undefined);
      await redis.stop();
    }
  }, 30_000);

  it('listen fails after connectTimeout with a clear message, status "disconnected", and the process exits', async () => {
    const port = await freePort();
    const started = Date.now();
    const error = await InstanceProcess.start({
      instanceId: 'never',
      redisUrl: `redis://:secret@127.0.0.1:${port}`,
      namespace: 'fault-start',
      script: FAULT_APP,
      env: { CONNECT_TIMEOUT: '1500' },
    }).catch((e: Error) => e);
    const exitedMs = Date.now() - started;
    expect(error).toBeInstanceOf(Error);
    const message = (error as Error).message;
    expect(message).toContain('exited (1)');
    expect(message).toContain(`could not connect to redis://127.0.0.1:${port} within connectTimeout (1500 ms)`);
    expect(message).not.toContain('secret');
    expect([...message.matchAll(/STATUS never (\w+)/g)].map((m) => m[1])).toEqual(['connecting', 'disconnected']);
    expect(exitedMs).toBeLessThan(1500 + 5000);
    reportFault('startup-redis-missing', { exitedMsAfterStart: exitedMs, error: /FAILED (.*)/.exec(message)?.[1] });
  }, 30_000);

  it('a client whose connect attempts timed out leaves nothing running after close (regression: leaked retrying connections)', async () => {
    const port = await freePort();
    const script = `
      import { BufferClient } from 'nestjs-redis-buffer';
      const client = new BufferClient({ redis: 'redis://127.0.0.1:${port}', connectTimeout: 200, timeout: 1000 });
      for (let i = 0; i < 3; i++) await client.gather('x', null).catch((e) => console.log('ERR ' + e.code));
      await client.close();
      console.log('CLOSED ' + Date.now());`;
    const { stdout, exitedAt } = await new Promise<{ stdout: string; exitedAt: number }>((resolve, reject) => {
      execFile(process.execPath, ['--input-type=module', '-e', script], { cwd: process.cwd(), timeout: 15_000 }, (error, out) =>
        error ? reject(error) : resolve({ stdout: out, exitedAt: Date.now() }),
      );
    });
    expect(stdout.match(/ERR BUFFER_CONNECTION_LOST/g)).toHaveLength(3);
    expect(exitedAt - Number(/CLOSED (\d+)/.exec(stdout)?.[1])).toBeLessThan(1500);
  }, 20_000);

  it('a request made while the first connection is still being attempted fails with ConnectionLostError by its timeout', async () => {
    const port = await freePort();
    const client = new BufferClient({ redis: `redis://127.0.0.1:${port}`, connectTimeout: 5000, timeout: 500 });
    try {
      const started = Date.now();
      await expect(client.gather('x', null)).rejects.toBeInstanceOf(ConnectionLostError);
      expect(Date.now() - started).toBeLessThan(500 + MARGIN_MS);
    } finally {
      await client.close();
    }
  });
});
