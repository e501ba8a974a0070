// The responder protocol without Nest: a core Responder on a real redis-server, asked by the core
// Caller and by hand-written envelopes on a raw connection.
import { Observable, interval, map, take } from 'rxjs';
import { Redis } from 'ioredis';
import { Responder } from '../src/core/respond/responder.js';
import type { MessageContext } from '../src/core/respond/message-context.js';
import { Caller } from '../src/core/gather/caller.js';
import { BufferChannels } from '../src/core/wire/channels.js';
import { createBus } from '../src/core/bus/create-bus.js';
import { resolveBufferOptions } from '../src/core/options.js';
import { systemClock, type Clock } from '../src/core/clock.js';
import { DuplicateInstanceError } from '../src/core/errors/duplicate-instance.error.js';
import type { BufferLogger } from '../src/core/logger.js';
import { startRedis, type TestRedis } from '../../../test/support/redis-server.js';

const quiet: BufferLogger = { log: () => undefined, warn: () => undefined, error: () => undefined };
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('Responder (no Nest)', () => {
  let redis: TestRedis;
  let namespace: string;
  let caller: Caller;
  const responders: Responder<unknown>[] = [];
  let nextNamespace = 0;

  const responder = <C = MessageContext>(instanceId: string, options: Record<string, unknown> = {}, seams: Record<string, unknown> = {}): Responder<C> => {
    const created = new Responder<C>({ redis: redis.url, namespace, instanceId, ...options }, { logger: quiet, ...seams });
    responders.push(created as Responder<unknown>);
    return created;
  };

  beforeAll(async () => {
    redis = await startRedis();
  });

  beforeEach(async () => {
    namespace = `resp${nextNamespace++}`;
    caller = new Caller({ redis: redis.url, namespace, instanceId: 'caller', timeout: 3000 }, { logger: quiet });
  });

  afterEach(async () => {
    await Promise.all(responders.splice(0).map((r) => r.close()));
    await caller.close();
  });

  afterAll(async () => {
    await redis?.stop();
  });

  it('answers a request with what a plain function returns (value, promise or stream), and hands it the message context', async () => {
    const seen: MessageContext[] = [];
    const r = responder('plain-1')
      .handle('value', (data) => (data as number) * 2)
      .handle('promise', async (data) => `later ${String(data)}`)
      .handle('stream', () => interval(2).pipe(take(3), map((n) => n + 1)))
      .handle('ctx', (_data, context) => {
        seen.push(context);
        return context.requestId;
      });
    await r.listen();
    expect(r.state).toBe('listening');
    await caller.connect();
    expect((await caller.gather<number>('value', 21)).replies.map((reply) => reply.data)).toEqual([42]);
    expect((await caller.gather<string>('promise', 'x')).replies.map((reply) => reply.data)).toEqual(['later x']);
    const streamed = await caller.gather<number>('stream', null);
    expect(streamed).toMatchObject({ completedBy: 'all', expected: 1, finished: 1 });
    expect(streamed.replies.map((reply) => reply.data)).toEqual([1, 2, 3]);
    const before = Date.now();
    const ctx = await caller.gather<string>('ctx', null, { headers: { 'x-tenant': 't1' }, timeout: 2000 });
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ kind: 'request', pattern: 'ctx', senderId: 'caller', instanceId: 'plain-1', channel: `${namespace}:req:ctx`, headers: { 'x-tenant': 't1' } });
    expect(ctx.replies[0]!.data).toBe(seen[0]!.requestId);
    expect(seen[0]!.deadline).toBeGreaterThan(before);
    expect(seen[0]!.deadline).toBeLessThanOrEqual(Date.now() + 2000);
    expect(r.stats).toMatchObject({ requests: 4, refused: 0 });
    expect(r.activeRequests).toBe(0);
  });

  it('answers a throwing handler with its error, and a direct request for a pattern it lacks with a NO_HANDLER refusal', async () => {
    const r = responder('plain-err').handle('fail', () => {
      throw new Error('boom');
    });
    await r.listen();
    const failed = await caller.gather('fail', null);
    expect(failed).toMatchObject({ completedBy: 'all', finished: 1 });
    expect(failed.errors[0]!.error).toMatchObject({ message: 'boom' });
    const missing = await caller.gather('absent', null, { to: 'plain-err' });
    expect(missing.errors[0]).toMatchObject({ instanceId: 'plain-err', refused: true, error: { code: 'BUFFER_NO_HANDLER' } });
    expect(r.stats).toMatchObject({ requests: 2, unhandled: 1, refused: 1 });
  });

  it('refuses with BUFFER_OVERLOADED past maxConcurrentHandlers and the queue, and with BUFFER_EXPIRED what waited past its deadline', async () => {
    const r = responder('plain-busy', { maxConcurrentHandlers: 1, maxQueuedHandlers: 1 }).handle('slow', () => sleep(400).then(() => 'done'));
    await r.listen();
    await caller.connect();
    const results = await Promise.all([
      caller.gather('slow', null, { timeout: 3000 }),
      caller.gather('slow', null, { timeout: 250 }),
      caller.gather('slow', null, { timeout: 3000 }),
    ]);
    expect(results[0]!.replies.map((reply) => reply.data)).toEqual(['done']);
    // Queued behind the first for 400 ms: past its 250 ms deadline when its turn came.
    expect(results[1]!.completedBy).toBe('timeout');
    expect(results[2]!.errors[0]).toMatchObject({ refused: true, error: { code: 'BUFFER_OVERLOADED' } });
    await sleep(500);
    expect(r.stats).toMatchObject({ requests: 3, overloaded: 1, expired: 1, refused: 2 });
  });

  it('answers who with its patterns and events, ping with a pong, and refuses to start beside a live instance with its id', async () => {
    const r = responder('plain-who').handle('a', () => 1).onEvent('e', () => undefined);
    await r.listen();
    const channels = new BufferChannels(namespace);
    const inbox = channels.inbox('raw');
    const sub = new Redis(redis.url);
    const pub = new Redis(redis.url);
    try {
      const received: Array<Record<string, unknown>> = [];
      sub.on('message', (_channel: string, message: string) => {
        // One message may be a batch (an array) when the two answers leave in one tick.
        const parsed = JSON.parse(message) as Record<string, unknown> | Array<Record<string, unknown>>;
        received.push(...(Array.isArray(parsed) ? parsed : [parsed]));
      });
      await sub.subscribe(inbox);
      await pub.publish(channels.who(), JSON.stringify({ v: 1, kind: 'who', id: 'w1', from: 'raw', replyTo: inbox }));
      await pub.publish(channels.direct('plain-who'), JSON.stringify({ v: 1, kind: 'ping', id: 'p1', from: 'raw', replyTo: inbox }));
      for (let i = 0; i < 100 && received.length < 2; i++) await sleep(20);
      expect(received).toContainEqual({ v: 1, kind: 'hello', id: 'w1', from: 'plain-who', inc: r.incarnation, patterns: ['a'], events: ['e'], cq: 1 });
      expect(received).toContainEqual({ v: 1, kind: 'pong', id: 'p1', from: 'plain-who', inc: r.incarnation });
      expect(r.stats.pings).toBe(1);
    } finally {
      sub.disconnect();
      pub.disconnect();
    }
    const twin = responder('plain-who').handle('a', () => 2);
    await expect(twin.listen()).rejects.toBeInstanceOf(DuplicateInstanceError);
    expect(twin.state).toBe('closed');
    expect((await caller.gather<number>('a', null)).replies.map((reply) => reply.data)).toEqual([1]);
  });

  it('beats on the members channel while a handler runs long: first at a fifth of livenessTimeout, then every two fifths; callers need no ping', async () => {
    const r = responder('plain-beat', { livenessTimeout: 1000 })
      .handle('slow', () => sleep(1300).then(() => 'done'))
      .handle('quick', () => sleep(50).then(() => 'done'));
    await r.listen();
    await caller.connect();
    const sub = new Redis(redis.url);
    try {
      const beats: number[] = [];
      let startedAt = 0;
      sub.on('message', (_channel: string, message: string) => {
        const parsed = JSON.parse(message) as { kind: string; from: string } | Array<{ kind: string; from: string }>;
        for (const envelope of Array.isArray(parsed) ? parsed : [parsed]) if (envelope.kind === 'pong' && envelope.from === 'plain-beat') beats.push(Date.now() - startedAt);
      });
      await sub.subscribe(new BufferChannels(namespace).members());
      const pingsBefore = caller.stats.pings;
      startedAt = Date.now();
      await caller.gather('quick', null);
      expect(beats).toEqual([]);
      startedAt = Date.now();
      const result = await caller.gather('slow', null);
      expect(result).toMatchObject({ completedBy: 'all', finished: 1, missing: [] });
      // About 200, 600 and 1000 ms after the request (timers on a shared machine run late, not early).
      expect(beats.length).toBeGreaterThanOrEqual(2);
      expect(beats.length).toBeLessThanOrEqual(3);
      expect(beats[0]).toBeGreaterThanOrEqual(195);
      expect(beats[0]).toBeLessThan(450);
      // Two fifths apart (400 ms), not one: measured where the beats arrive, so one beat's delivery
      // may have taken a few ms longer than the next one's on a loaded machine.
      expect(beats[1]! - beats[0]!).toBeGreaterThanOrEqual(350);
      // The first beat reached the caller before its first liveness round (a quarter of its bound
      // after the request), and each next one within half a bound of the last: it never pinged.
      expect(caller.stats.pings - pingsBefore).toBe(0);
    } finally {
      sub.disconnect();
    }
  });

  it('runs event handlers, one event per registered pattern', async () => {
    const seen: string[] = [];
    const r = responder('plain-events').onEvent('cache.invalidate', (key, context) => void seen.push(`${String(key)}@${context.senderId}`));
    await r.listen();
    expect(await caller.emit('cache.invalidate', 'k1')).toBe(1);
    for (let i = 0; i < 100 && seen.length === 0; i++) await sleep(10);
    expect(seen).toEqual(['k1@caller']);
    expect(r.stats.events).toBe(1);
  });

  it('close() drains: a request in flight is answered, a direct request meanwhile is refused, callers see it leave', async () => {
    const r = responder('plain-drain').handle('slow', () => sleep(300).then(() => 'finished'));
    await r.listen();
    await caller.connect();
    const inFlight = caller.gather('slow', null);
    await sleep(50);
    const closing = r.close();
    expect(r.state).toBe('draining');
    await sleep(20);
    const direct = await caller.gather('slow', null, { to: 'plain-drain' });
    expect(direct.errors[0]).toMatchObject({ refused: true, error: { code: 'BUFFER_SHUTTING_DOWN' } });
    expect((await inFlight).replies.map((reply) => reply.data)).toEqual(['finished']);
    await closing;
    expect(r.state).toBe('closed');
    for (let i = 0; i < 100 && caller.knownInstances().some((info) => info.instanceId === 'plain-drain'); i++) await sleep(10);
    expect(caller.knownInstances().map((info) => info.instanceId)).not.toContain('plain-drain');
  });

  it('close() past shutdownTimeout ends a handler still running with BUFFER_SHUTTING_DOWN', async () => {
    const r = responder('plain-stuck', { shutdownTimeout: 200 }).handle('never', () => new Observable(() => undefined));
    await r.listen();
    await caller.connect();
    const pending = caller.gather('never', null, { timeout: 3000 });
    await sleep(50);
    await r.close();
    const result = await pending;
    expect(result.errors[0]).toMatchObject({ instanceId: 'plain-stuck', error: { code: 'BUFFER_SHUTTING_DOWN' } });
    expect(r.activeRequests).toBe(0);
  });

  it('runs handlers inside a run-around hook when it is active, ending it after a stream completes', async () => {
    const calls: string[] = [];
    let active = false;
    const r = responder<{ pattern: string }>('plain-hooked', {}, {
      context: (message: MessageContext) => ({ pattern: message.pattern }),
      runAround: {
        active: () => active,
        run: async (context: { pattern: string }, handler: (runEnd: () => void) => Promise<void>) => {
          calls.push(`start ${context.pattern}`);
          await handler(() => calls.push(`end ${context.pattern}`));
        },
      },
    }).handle('stream', (_data, context) => interval(5).pipe(take(2), map(() => context.pattern)));
    await r.listen();
    expect((await caller.gather('stream', null)).replies.map((reply) => reply.data)).toEqual(['stream', 'stream']);
    expect(calls).toEqual([]);
    active = true;
    expect((await caller.gather('stream', null)).replies).toHaveLength(2);
    expect(calls).toEqual(['start stream', 'end stream']);
  });

  it('uses the bus and clock it is given', async () => {
    const bus = createBus(resolveBufferOptions({ redis: redis.url }), 'injected');
    let reads = 0;
    const clock: Clock = { ...systemClock, now: () => (reads++, systemClock.now()) };
    const r = responder('plain-seams', {}, { bus, clock }).handle('x', () => 'ok');
    await r.listen();
    expect(bus.status).toBe('connected');
    const readsBefore = reads;
    expect((await caller.gather('x', null)).replies.map((reply) => reply.data)).toEqual(['ok']);
    expect(reads).toBeGreaterThan(readsBefore);
  });

  it('decides expiry on the clock it is given: a queued request whose turn comes past its deadline by that clock is refused BUFFER_EXPIRED', async () => {
    let offset = 0;
    const clock: Clock = { ...systemClock, now: () => systemClock.now() + offset };
    const r = responder('plain-clock', { maxConcurrentHandlers: 1 }, { clock }).handle('slow', () => sleep(200).then(() => 'done'));
    await r.listen();
    await caller.connect();
    const first = caller.gather('slow', null);
    const second = caller.gather('slow', null, { timeout: 3000 });
    await sleep(50);
    // A minute passes on the responder's clock while the second request waits for the slot.
    offset = 60_000;
    expect((await first).replies.map((reply) => reply.data)).toEqual(['done']);
    const refused = await second;
    expect(refused).toMatchObject({ completedBy: 'all', finished: 1 });
    expect(refused.errors[0]).toMatchObject({ instanceId: 'plain-clock', refused: true, error: { code: 'BUFFER_EXPIRED' } });
    expect(r.stats).toMatchObject({ requests: 2, expired: 1 });
  });

  it('refuses to register a handler after listen(), or twice for one pattern', async () => {
    const r = responder('plain-reg').handle('a', () => 1);
    expect(() => r.handle('a', () => 2)).toThrow('already registered');
    await r.listen();
    expect(() => r.handle('b', () => 2)).toThrow('before listen()');
  });
});
