// Fault suite, exact completion: every request ends as soon as its answer is known, also through a
// rolling deploy, a twin instance id, a frozen or killed instance, an observer on the channels, a
// skewed clock, a request the instances cannot run, and a throwing callback. The figures reported
// with TEST_LOGS=1 ("FAULT ...") are the ones in docs/reliability.md.
import { BadMessageError, BufferClient, CallbackError, NoRespondersError, ConnectionLostError, InstancesMissingError, InvalidOptionsError, RedisBufferTransport } from 'nestjs-redis-buffer';
import { lastValueFrom, Observable, of, toArray } from 'rxjs';
import { InstanceProcess, InstanceSpawner, stopAll } from '../support/instances.js';
import { FAULT_APP, startLoads, totalErrors, type LoadProcess } from '../support/load.js';
import { collect, rawRedis, sleep } from '../support/raw-redis.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { quietLogs, reportFault } from '../support/captured-logs.js';

// What these faults make this process's clients log on purpose: captured, not printed.
quietLogs([/^Redis: /, /^Dropped a /, /similar messages suppressed/]);

const namespace = 'exact';
const TIMEOUT = 5000;

type Wire = { id: string; from?: string; refused?: boolean; done?: boolean; error?: { code?: string }; data?: unknown };

describe('fault: exact completion', () => {
  let redis: TestRedis;
  let client: BufferClient;
  const instances = new InstanceSpawner(() => redis.url, namespace, FAULT_APP);
  const spawn = (instanceId: string, env?: Record<string, string>): Promise<InstanceProcess> => instances.spawn(instanceId, env);

  /** Waits until the client's view lists exactly `ids` (joins and leaves are announced on Redis). */
  async function viewIs(ids: string[]): Promise<void> {
    const wanted = [...ids].sort().join(',');
    let seen = '';
    for (let deadline = Date.now() + 5000; Date.now() < deadline; await sleep(50)) {
      seen = (await client.instances()).map((i) => i.instanceId).sort().join(',');
      if (seen === wanted) return;
    }
    throw new Error(`instances() lists ${seen}, expected ${wanted}`);
  }

  beforeAll(async () => {
    redis = await startRedis();
    client = new BufferClient({ redis: redis.url, namespace, timeout: TIMEOUT });
    await client.connect();
  });

  // Every test starts from an empty namespace: what one test started never answers another's requests.
  afterEach(async () => {
    await instances.stopAll();
    await viewIs([]);
  });

  afterAll(async () => {
    await client?.close();
    await redis?.stop();
  }, 60_000);

  it('a rolling deploy of three instances under load ends no request by its timeout', async () => {
    let current = await Promise.all([spawn('d1-v1'), spawn('d2-v1'), spawn('d3-v1')]);
    let loads: LoadProcess[] = await startLoads([
      { id: 'deploy-load-1', redisUrl: redis.url, namespace, timeout: 2000, concurrency: 8 },
      { id: 'deploy-load-2', redisUrl: redis.url, namespace, timeout: 2000, concurrency: 8 },
    ]);
    try {
      await Promise.all(loads.map((load) => load.until((s) => s.ok >= 100, 15_000, '100 successes')));
      const started = Date.now();
      // Each instance in turn: start its replacement, then SIGTERM it (enableShutdownHooks drains).
      for (let index = 0; index < 3; index++) {
        const replacement = await spawn(`d${index + 1}-v2`);
        await sleep(300);
        // Nest's shutdown hooks end the process by re-raising the signal once the app has closed.
        expect(await current[index]!.stop('SIGTERM')).toMatch(/^(0|SIGTERM)$/);
        current[index] = replacement;
        await sleep(300);
      }
      const deployMs = Date.now() - started;
      await sleep(300);
      const finals = await Promise.all(loads.map((load) => load.stop()));
      loads = [];
      const errors = totalErrors(finals);
      expect(errors).toEqual({});
      for (const final of finals) expect(final.unhandledRejections + final.uncaughtExceptions).toBe(0);
      await viewIs(['d1-v2', 'd2-v2', 'd3-v2']);
      reportFault('rolling-deploy', { instances: 3, deployMs, requests: finals.reduce((sum, f) => sum + f.sent, 0), timeouts: 0, errors });
    } finally {
      for (const load of loads) await load.stop();
      await stopAll(current);
    }
  }, 90_000);

  it('a second instance with the same instanceId is refused at start-up, naming the id, and the first keeps serving', async () => {
    const first = await spawn('twin');
    try {
      const error = await spawn('twin').then(
        () => undefined,
        (e: Error) => e,
      );
      expect(error?.message).toContain('Instance id "twin" is already in use in namespace "exact"');
      const result = await client.gather<string>('whoami', null);
      expect(result).toMatchObject({ completedBy: 'all', expected: 1, finished: 1 });
      expect(result.replies.map((r) => r.data)).toEqual(['twin']);
      expect(first.exited).toBe(false);
    } finally {
      await first.stop();
    }
  }, 60_000);

  it('a frozen instance (SIGSTOP) stops holding requests within the liveness bound, is named, and rejoins after SIGCONT', async () => {
    const group = await Promise.all([spawn('f1'), spawn('f2'), spawn('f3')]);
    try {
      await viewIs(['f1', 'f2', 'f3']);
      group[1]!.signal('SIGSTOP');
      const started = Date.now();
      const result = await client.gather<string>('whoami', null);
      const firstMs = Date.now() - started;
      expect(result).toMatchObject({ completedBy: 'all', expected: 3, finished: 2, missing: ['f2'], missingReasons: { f2: 'silent' } });
      expect(firstMs).toBeLessThan(2500);
      // While it stays frozen, later requests do not wait for it at all, and still name it.
      const again = Date.now();
      const second = await client.gather<string>('whoami', null);
      const secondMs = Date.now() - again;
      expect(second).toMatchObject({ completedBy: 'all', expected: 3, finished: 2, missing: ['f2'] });
      expect(secondMs).toBeLessThan(1000);
      const streamed = await lastValueFrom(client.scatter('whoami', null).pipe(toArray())).catch((e: unknown) => e);
      expect(streamed).toBeInstanceOf(InstancesMissingError);
      expect((streamed as InstancesMissingError).missing).toEqual(['f2']);
      group[1]!.signal('SIGCONT');
      let back: string[] = [];
      for (let deadline = Date.now() + 5000; back.length < 3 && Date.now() < deadline; await sleep(100)) {
        back = (await client.gather<string>('whoami', null)).replies.map((r) => r.data).sort();
      }
      expect(back).toEqual(['f1', 'f2', 'f3']);
      reportFault('frozen-instance', { livenessTimeoutMs: 1000, firstRequestMs: firstMs, whileFrozenMs: secondMs, timeoutMs: TIMEOUT });
    } finally {
      group[1]!.signal('SIGCONT');
      await stopAll(group);
    }
  }, 60_000);

  it('a SIGKILLed instance stops holding the request in flight at once, and is named as gone', async () => {
    const group = await Promise.all([spawn('k1'), spawn('k2'), spawn('k3', { SLOW_MS: '4000' })]);
    try {
      await viewIs(['k1', 'k2', 'k3']);
      const started = Date.now();
      const pending = client.gather<string>('slow.env', null);
      await sleep(200);
      const killedAt = Date.now();
      await group[2]!.stop('SIGKILL');
      const result = await pending;
      const afterKillMs = Date.now() - killedAt;
      expect(result).toMatchObject({ completedBy: 'all', expected: 3, finished: 2, missing: ['k3'], missingReasons: { k3: 'unreachable' } });
      // k3 would have answered after 4 s, the timeout is 5 s: it is known gone within the liveness bound.
      expect(afterKillMs).toBeLessThan(1500);
      expect(Date.now() - started).toBeLessThan(2000);
      // A request that did not reach it (killed before) does not wait for it either, and names it:
      // nobody on its direct channel could as well be an instance reconnecting after a failover.
      const after = Date.now();
      const next = await client.gather<string>('whoami', null);
      expect(next).toMatchObject({ completedBy: 'all', expected: 2, finished: 2, missing: ['k3'], missingReasons: { k3: 'unreachable' } });
      expect(Date.now() - after).toBeLessThan(1000);
      reportFault('sigkill-in-flight', { killedInstanceHandlerMs: 4000, timeoutMs: TIMEOUT, completedMsAfterKill: afterKillMs });
    } finally {
      await stopAll(group);
    }
  }, 60_000);

  it('an observer on the channels (SUBSCRIBE and PSUBSCRIBE) never holds a request', async () => {
    const group = await Promise.all([spawn('o1'), spawn('o2')]);
    const observer = rawRedis(redis.url);
    const patternObserver = rawRedis(redis.url);
    // A caller of its own: the shared one still names the instance killed above (unreachable, for
    // 30 liveness bounds), and a PSUBSCRIBE to * answers for its direct channel too.
    const shared = client;
    client = new BufferClient({ redis: redis.url, namespace, timeout: TIMEOUT });
    try {
      await client.connect();
      await viewIs(['o1', 'o2']);
      await observer.subscribe(`${namespace}:req:whoami`);
      await patternObserver.psubscribe('*');
      const started = Date.now();
      const times: number[] = [];
      for (let i = 0; i < 50; i++) {
        const result = await client.gather<string>('whoami', null);
        expect(result).toMatchObject({ completedBy: 'all', expected: 4, finished: 2, observers: 2, missing: [] });
        times.push(result.elapsedMs);
      }
      const totalMs = Date.now() - started;
      expect(Math.max(...times)).toBeLessThan(1000);
      // A pattern no instance handles, where only the observer listens: nobody will answer.
      const nobody = await client.gather('nobody.handles.this', null).catch((e: unknown) => e);
      expect(nobody).toBeInstanceOf(NoRespondersError);
      expect((nobody as NoRespondersError).observers).toBe(1);
      reportFault('observers', { observers: 2, requests: 50, totalMs, maxMs: Math.max(...times) });
    } finally {
      await client.close();
      client = shared;
      await observer.quit();
      await patternObserver.quit();
      await stopAll(group);
    }
  }, 60_000);

  it('requests the instances cannot run are refused at once, with a code: a newer version, a bad header, past the deadline', async () => {
    const group = await Promise.all([spawn('r1'), spawn('r2')]);
    const inbox = await collect(redis.url, `${namespace}:inbox:by-hand`);
    const publisher = rawRedis(redis.url);
    try {
      const request = (fields: Record<string, unknown>) =>
        JSON.stringify({ v: 1, kind: 'request', pattern: 'whoami', from: 'cli', replyTo: `${namespace}:inbox:by-hand`, ttl: 5000, headers: {}, data: null, ...fields });
      expect(await publisher.publish(`${namespace}:req:whoami`, request({ v: 2, id: 'v2', future: { field: true } }))).toBe(2);
      expect(await publisher.publish(`${namespace}:req:whoami`, request({ id: 'long-header', headers: { big: 'x'.repeat(10_000) } }))).toBe(2);
      expect(await publisher.publish(`${namespace}:req:whoami`, request({ id: 'late', ttl: undefined, deadline: Date.now() - 1000 }))).toBe(2);
      // A reply channel outside the namespace's inboxes is never written to (no amplification).
      const elsewhere = await collect(redis.url, 'somewhere-else');
      expect(await publisher.publish(`${namespace}:req:whoami`, request({ id: 'amplify', replyTo: 'somewhere-else' }))).toBe(2);
      for (let waited = 0; inbox.messages.length < 6 && waited < 3000; waited += 20) await sleep(20);
      await sleep(200);
      const replies = inbox.messages.flatMap((m) => [JSON.parse(m) as Wire | Wire[]].flat());
      const codes = (id: string) => replies.filter((r) => r.id === id).map((r) => `${r.from}:${r.refused}:${r.error?.code}`).sort();
      expect(codes('v2')).toEqual(['r1:true:BUFFER_UNSUPPORTED_VERSION', 'r2:true:BUFFER_UNSUPPORTED_VERSION']);
      expect(codes('long-header')).toEqual(['r1:true:BUFFER_BAD_REQUEST', 'r2:true:BUFFER_BAD_REQUEST']);
      expect(codes('late')).toEqual(['r1:true:BUFFER_EXPIRED', 'r2:true:BUFFER_EXPIRED']);
      expect(elsewhere.messages).toEqual([]);
      await elsewhere.close();

      // The library's own client applies the receivers' rules before sending anything.
      const sentBefore = client.stats.requests;
      const header = await client.gather('whoami', null, { headers: { big: 'x'.repeat(10_000) } }).catch((e: unknown) => e);
      expect(header).toBeInstanceOf(InvalidOptionsError);
      expect((header as InvalidOptionsError).option).toBe('headers');
      const pattern = await client.gather('p'.repeat(2000), null).catch((e: unknown) => e);
      expect(pattern).toBeInstanceOf(BadMessageError);
      expect(client.stats.requests).toBe(sentBefore);
    } finally {
      await inbox.close();
      await publisher.quit();
      await stopAll(group);
    }
  }, 60_000);

  it('an error too large to publish is replaced by a typed error reply, and the gather completes at once', async () => {
    const group = await Promise.all([spawn('e1', { MAX_PAYLOAD_BYTES: '4096' }), spawn('e2', { MAX_PAYLOAD_BYTES: '4096' })]);
    try {
      const result = await client.gather('big.fail', 10_000);
      expect(result).toMatchObject({ completedBy: 'all', expected: 2, finished: 2 });
      expect(result.errors.map((e) => (e.error as { code: string }).code)).toEqual(['BUFFER_REPLY_TOO_LARGE', 'BUFFER_REPLY_TOO_LARGE']);
      expect(result.elapsedMs).toBeLessThan(1000);
    } finally {
      await stopAll(group);
    }
  }, 60_000);

  it('instances whose clocks are 2.5 s ahead or behind answer as if in step: deadlines travel as time left', async () => {
    const group = await Promise.all([spawn('c-fast', { CLOCK_SKEW_MS: '2500' }), spawn('c-slow', { CLOCK_SKEW_MS: '-2500' }), spawn('c-true')]);
    try {
      for (let i = 0; i < 20; i++) {
        const result = await client.gather<string>('whoami', null, { timeout: 2000 });
        expect(result).toMatchObject({ completedBy: 'all', expected: 3, finished: 3 });
        expect(result.errors).toEqual([]);
      }
      // The handler sees its own clock's deadline, about `timeout` from now by that clock.
      const context = await client.gather<{ remaining: number }>('whoami', null, { timeout: 2000 });
      expect(context.replies).toHaveLength(3);
      reportFault('clock-skew', { skewsMs: [2500, -2500, 0], requests: 20, timeouts: 0 });
    } finally {
      await stopAll(group);
    }
  }, 60_000);

  it('a throwing "until" or "onReply" ends that request with CallbackError, and nothing else', async () => {
    const group = await Promise.all([spawn('u1'), spawn('u2')]);
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown): void => void uncaught.push(error);
    process.on('uncaughtException', onUncaught);
    try {
      const untilError = await client
        .gather('whoami', null, {
          until: () => {
            throw new Error('until broke');
          },
        })
        .catch((e: unknown) => e);
      expect(untilError).toBeInstanceOf(CallbackError);
      expect(untilError).toMatchObject({ code: 'BUFFER_CALLBACK_FAILED', callback: 'until' });
      expect(((untilError as CallbackError).cause as Error).message).toBe('until broke');
      const onReplyError = await client
        .gather('whoami', null, {
          onReply: () => {
            throw new Error('onReply broke');
          },
        })
        .catch((e: unknown) => e);
      expect(onReplyError).toMatchObject({ code: 'BUFFER_CALLBACK_FAILED', callback: 'onReply' });
      await sleep(100);
      expect(uncaught).toEqual([]);
      expect(client.inFlight).toBe(0);
      const fine = await client.gather('whoami', null);
      expect(fine).toMatchObject({ completedBy: 'all', finished: 2 });
    } finally {
      process.off('uncaughtException', onUncaught);
      await stopAll(group);
    }
  }, 60_000);

  it('a pattern with a request handler and an event handler: both work', async () => {
    const group = await Promise.all([spawn('h1'), spawn('h2')]);
    try {
      const result = await client.gather<string>('dual', null);
      expect(result.replies.map((r) => r.data).sort()).toEqual(['h1:request', 'h2:request']);
      expect(await lastValueFrom(client.emit('dual', { n: 1 }))).toBe(2);
      let seen: unknown[][] = [];
      for (let deadline = Date.now() + 2000; Date.now() < deadline; await sleep(20)) {
        seen = (await client.gather<unknown[]>('dual.seen', null)).replies.map((r) => r.data);
        if (seen.length === 2 && seen.every((events) => events.length === 1)) break;
      }
      expect(seen).toEqual([[{ n: 1 }], [{ n: 1 }]]);
    } finally {
      await stopAll(group);
    }
  }, 60_000);

  it('an event received past its deadline is dropped (a captured event cannot be replayed later)', async () => {
    const group = await Promise.all([spawn('ev1')]);
    const publisher = rawRedis(redis.url);
    try {
      const event = (id: string, deadline: number) => JSON.stringify({ v: 1, kind: 'event', id, pattern: 'dual', from: 'cli', deadline, headers: {}, data: id });
      await publisher.publish(`${namespace}:evt:dual`, event('stale', Date.now() - 1000));
      await publisher.publish(`${namespace}:evt:dual`, event('fresh', Date.now() + 60_000));
      let seen: unknown[] = [];
      for (let deadline = Date.now() + 2000; seen.length === 0 && Date.now() < deadline; await sleep(20)) {
        seen = (await client.gather<unknown[]>('dual.seen', null)).replies[0]!.data;
      }
      expect(seen).toEqual(['fresh']);
    } finally {
      await publisher.quit();
      await stopAll(group);
    }
  }, 60_000);

  it('a request cancelled before its batch is flushed, or failed by close(), is never published', async () => {
    const group = await Promise.all([spawn('n1')]);
    const watcher = await collect(redis.url, `${namespace}:req:whoami`);
    const local = new BufferClient({ redis: redis.url, namespace });
    try {
      await local.connect();
      const subscription = local.scatter('whoami', 'cancelled').subscribe({ error: () => undefined });
      subscription.unsubscribe();
      const closing = local.gather('whoami', 'closed').catch((e: unknown) => e);
      await local.close();
      expect(await closing).toBeInstanceOf(ConnectionLostError);
      await sleep(300);
      expect(watcher.messages.filter((m) => m.includes('cancelled') || m.includes('closed'))).toEqual([]);
    } finally {
      await watcher.close();
      await stopAll(group);
    }
  }, 60_000);

  it('a request whose PUBLISH was cut with the publisher connection is not sent again after the reconnect', async () => {
    const group = await Promise.all([spawn('p1')]);
    const watcher = await collect(redis.url, `${namespace}:req:whoami`);
    const admin = rawRedis(redis.url);
    const local = new BufferClient({ redis: redis.url, namespace, instanceId: 'resend-check', timeout: 2000 });
    // The cut PUBLISH is failed by the library; ioredis may still reject it later, which must not
    // surface as an unhandled rejection (it ended a resource-service process during shutdown).
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      await local.connect();
      // Hold every write command (PUBLISH included), so the request is in flight when its connection dies.
      await admin.call('CLIENT', 'PAUSE', '1500', 'WRITE');
      const pending = local.gather('whoami', 'must-not-repeat').catch((e: unknown) => e);
      await sleep(100);
      const list = (await admin.client('LIST')) as string;
      const publisherId = /id=(\d+) .*name=rb-client:resend-check:pub/.exec(list)?.[1];
      expect(publisherId).toBeDefined();
      await admin.call('CLIENT', 'KILL', 'ID', publisherId!);
      const outcome = await pending;
      expect(outcome).toBeInstanceOf(ConnectionLostError);
      await admin.call('CLIENT', 'UNPAUSE');
      await sleep(1000);
      expect(watcher.messages.filter((m) => m.includes('must-not-repeat'))).toEqual([]);
      await local.close();
      await sleep(100);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      await admin.call('CLIENT', 'UNPAUSE').catch(() => undefined);
      await local.close();
      admin.disconnect();
      await watcher.close();
      await stopAll(group);
    }
  }, 60_000);

  it('closing a client while Redis is frozen ends within a second or so, and its request fails with ConnectionLostError', async () => {
    if (!redis.owned) return;
    const group = await Promise.all([spawn('q1')]);
    const local = new BufferClient({ redis: redis.url, namespace, instanceId: 'close-frozen', timeout: 5000 });
    try {
      await local.connect();
      redis.signal('SIGSTOP');
      // Its PUBLISH is written and never answered; before the fix, QUIT waited behind it forever.
      const pending = local.gather('whoami', null).catch((e: unknown) => e);
      await sleep(100);
      const closing = Date.now();
      await local.close();
      const closeMs = Date.now() - closing;
      expect(await pending).toBeInstanceOf(ConnectionLostError);
      expect(closeMs).toBeLessThan(3000);
    } finally {
      redis.signal('SIGCONT');
      await stopAll(group);
    }
  }, 60_000);

  it('a blip of the publisher connection alone does not fail a request whose inbox is healthy', async () => {
    const group = await Promise.all([spawn('b1'), spawn('b2')]);
    const admin = rawRedis(redis.url);
    const local = new BufferClient({ redis: redis.url, namespace, instanceId: 'blip-check', timeout: 4000 });
    try {
      await local.connect();
      const pending = local.gather<string>('slow', 800);
      await sleep(200);
      const list = (await admin.client('LIST')) as string;
      const publisherId = /id=(\d+) .*name=rb-client:blip-check:pub/.exec(list)?.[1];
      await admin.call('CLIENT', 'KILL', 'ID', publisherId!);
      const result = await pending;
      expect(result).toMatchObject({ completedBy: 'all', expected: 2, finished: 2 });
      expect(result.replies.map((r) => r.data).sort()).toEqual(['b1', 'b2']);
    } finally {
      await local.close();
      admin.disconnect();
      await stopAll(group);
    }
  }, 60_000);

  it('an object pattern has one channel name in every locale and language: keys in code-point order', async () => {
    const group = await Promise.all([spawn('l1')]);
    const inbox = await collect(redis.url, `${namespace}:inbox:locale`);
    const publisher = rawRedis(redis.url);
    try {
      const result = await client.gather<number>({ cmd: 'sum', Zone: 'eu' }, [1, 2, 3]);
      expect(result.replies.map((r) => r.data)).toEqual([6]);
      // What a Python or Go peer computes: "Zone" (U+005A) before "cmd" (U+0063).
      const channel = `${namespace}:req:{"Zone":"eu","cmd":"sum"}`;
      const request = JSON.stringify({ v: 1, kind: 'request', id: 'py-1', pattern: '{"Zone":"eu","cmd":"sum"}', from: 'py', replyTo: `${namespace}:inbox:locale`, ttl: 5000, data: [4, 5] });
      expect(await publisher.publish(channel, request)).toBe(1);
      for (let waited = 0; inbox.messages.length === 0 && waited < 2000; waited += 20) await sleep(20);
      expect(JSON.parse(inbox.messages[0]!)).toMatchObject({ id: 'py-1', from: 'l1', data: 9, done: true });
    } finally {
      await inbox.close();
      await publisher.quit();
      await stopAll(group);
    }
  }, 60_000);

  it('without processing hooks, every way a handler can fail or answer reaches the caller as one reply, and nothing escapes', async () => {
    const transport = new RedisBufferTransport({ redis: redis.url, namespace, instanceId: 'in-process-plain' });
    // Handlers as Nest's proxy may hand them over, and as a hand-registered handler may be.
    transport.addHandler('plain.sync.value', (() => 41) as never, false);
    transport.addHandler('plain.sync.throw', (() => {
      throw new Error('thrown before any promise');
    }) as never, false);
    transport.addHandler('plain.rejects', async () => Promise.reject(new Error('rejected')), false);
    transport.addHandler('plain.bad.stream', async () => new Observable(() => {
      throw new Error('stream threw on subscribe');
    }), false);
    transport.addHandler('plain.stream', async () => of(1, 2, 3), false);
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown): void => void uncaught.push(error);
    process.on('uncaughtException', onUncaught);
    process.on('unhandledRejection', onUncaught);
    try {
      await new Promise<void>((resolve, reject) => void transport.listen((error) => (error ? reject(error) : resolve())));
      const ask = (pattern: string) => client.gather(pattern, null, { to: 'in-process-plain' });
      expect((await ask('plain.sync.value')).replies.map((r) => r.data)).toEqual([41]);
      expect((await ask('plain.sync.throw')).errors[0]!.error).toMatchObject({ message: 'thrown before any promise' });
      expect((await ask('plain.rejects')).errors[0]!.error).toMatchObject({ message: 'rejected' });
      const bad = await ask('plain.bad.stream');
      expect(bad).toMatchObject({ completedBy: 'all', finished: 1 });
      expect(bad.errors[0]!.error).toMatchObject({ message: 'stream threw on subscribe' });
      expect((await ask('plain.stream')).replies.map((r) => r.data)).toEqual([1, 2, 3]);
      await sleep(50);
      expect(uncaught).toEqual([]);
      expect(transport.activeRequests).toBe(0);
    } finally {
      process.off('uncaughtException', onUncaught);
      process.off('unhandledRejection', onUncaught);
      await transport.close();
    }
  }, 60_000);

  it('a synchronous throw on the server\'s request path becomes an error reply, not an uncaught exception in the Redis listener', async () => {
    const transport = new RedisBufferTransport({ redis: redis.url, namespace, instanceId: 'in-process' });
    transport.addHandler('hooked', async () => 'never', false);
    // A processing hook (tracing, say) that throws synchronously, before the handler runs.
    (transport as unknown as { onProcessingStartHook: () => never }).onProcessingStartHook = () => {
      throw new Error('hook broke');
    };
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown): void => void uncaught.push(error);
    process.on('uncaughtException', onUncaught);
    try {
      await new Promise<void>((resolve, reject) => void transport.listen((error) => (error ? reject(error) : resolve())));
      await viewIs(['in-process']);
      const result = await client.gather('hooked', null);
      expect(result).toMatchObject({ completedBy: 'all', expected: 1, finished: 1 });
      expect(result.errors[0]!.error).toMatchObject({ message: 'hook broke' });
      expect(uncaught).toEqual([]);
    } finally {
      process.off('uncaughtException', onUncaught);
      await transport.close();
    }
  }, 60_000);
});
