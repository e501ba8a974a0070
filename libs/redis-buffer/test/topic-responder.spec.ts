// Topic requests and events between core Responders and a core Caller on a real redis-server, in
// one process (the separate-process cases, with SIGKILL, are in test/e2e/topics.e2e-spec.ts).
import { Redis } from 'ioredis';
import { Responder } from '../src/core/respond/responder.js';
import { Caller } from '../src/core/gather/caller.js';
import { NoRespondersError } from '../src/core/errors/no-responders.error.js';
import { TopicPatternError } from '../src/core/errors/topic-pattern.error.js';
import type { BufferLogger } from '../src/core/logger.js';
import type { MessageContext } from '../src/core/respond/message-context.js';
import { startRedis, type TestRedis } from '../../../test/support/redis-server.js';

const quiet: BufferLogger = { log: () => undefined, warn: () => undefined, error: () => undefined };
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('topics between Responders and a Caller', () => {
  let redis: TestRedis;
  let namespace: string;
  let caller: Caller;
  const responders: Responder[] = [];
  let next = 0;

  const responder = (instanceId: string): Responder => {
    const created = new Responder({ redis: redis.url, namespace, instanceId }, { logger: quiet });
    responders.push(created);
    return created;
  };
  const answer = (instanceId: string, binding: string) => (_data: unknown, context: MessageContext) => ({ instanceId, binding, topic: context.pattern });

  beforeAll(async () => {
    redis = await startRedis();
  });

  beforeEach(() => {
    namespace = `topic${next++}`;
    caller = new Caller({ redis: redis.url, namespace, instanceId: 'caller', timeout: 3000 }, { logger: quiet });
  });

  afterEach(async () => {
    await Promise.all(responders.splice(0).map((r) => r.close()));
    await caller.close();
  });

  afterAll(async () => {
    await redis?.stop();
  });

  it('gathers once from each instance whose patterns match, the most specific handler answering, with expected and finished in instances', async () => {
    const overlapping = responder('overlapping')
      .handle('order.created', answer('overlapping', 'order.created'))
      .handle('order.*', answer('overlapping', 'order.*'))
      .handle('order.>', answer('overlapping', 'order.>'));
    const wide = responder('wide').handle('order.>', answer('wide', 'order.>'));
    const other = responder('other').handle('whoami', () => 'other');
    await Promise.all([overlapping.listen(), wide.listen(), other.listen()]);
    await caller.connect();

    const created = await caller.gather<{ instanceId: string; binding: string; topic: string }>('order.created', null);
    expect(created).toMatchObject({ completedBy: 'all', expected: 2, finished: 2, missing: [], observers: 0 });
    expect(created.replies.map((reply) => reply.data).sort((a, b) => a.instanceId.localeCompare(b.instanceId))).toEqual([
      { instanceId: 'overlapping', binding: 'order.created', topic: 'order.created' },
      { instanceId: 'wide', binding: 'order.>', topic: 'order.created' },
    ]);
    // Reached on three channels, it ran once and answered the two other deliveries with repeats.
    expect(overlapping.stats.repeatDeliveries).toBe(2);

    const paid = await caller.gather<{ instanceId: string; binding: string }>('order.paid', null);
    expect(paid).toMatchObject({ completedBy: 'all', expected: 2, finished: 2, missing: [] });
    expect(paid.replies.map((reply) => `${reply.data.instanceId}:${reply.data.binding}`).sort()).toEqual(['overlapping:order.*', 'wide:order.>']);

    const deep = await caller.gather<{ instanceId: string; binding: string }>('order.paid.eu', null);
    expect(deep.replies.map((reply) => `${reply.data.instanceId}:${reply.data.binding}`).sort()).toEqual(['overlapping:order.>', 'wide:order.>']);

    // send() sees every value once too; a direct request takes the most specific handler.
    const direct = await caller.gather<{ binding: string }>('order.paid', null, { to: 'overlapping' });
    expect(direct).toMatchObject({ completedBy: 'all', expected: 1, finished: 1 });
    expect(direct.replies[0]!.data.binding).toBe('order.*');
    // No binding matches: nobody was published to.
    await expect(caller.gather('invoice.created', null)).rejects.toBeInstanceOf(NoRespondersError);
  });

  it('runs every matching event handler of an instance once, however many of its channels the event reached', async () => {
    const seen: string[] = [];
    const record = (instanceId: string, binding: string) => (data: unknown, context: MessageContext) => void seen.push(`${instanceId}:${binding}:${context.pattern}:${String(data)}`);
    const both = responder('both').onEvent('order.created', record('both', 'order.created')).onEvent('order.*', record('both', 'order.*')).onEvent('order.>', record('both', 'order.>'));
    const one = responder('one').onEvent('order.*', record('one', 'order.*'));
    await Promise.all([both.listen(), one.listen()]);
    await caller.connect();
    // Three deliveries to `both`, one to `one`: two instances.
    expect(await caller.emit('order.created', 7)).toBe(2);
    await until(() => seen.length >= 4, 'the event handlers');
    await sleep(100);
    expect(seen.sort()).toEqual(['both:order.*:order.created:7', 'both:order.>:order.created:7', 'both:order.created:order.created:7', 'one:order.*:order.created:7']);
    expect(both.stats.repeatDeliveries).toBe(2);
    seen.length = 0;
    await caller.emit('order.created.eu', 8);
    await until(() => seen.length >= 1, 'the event handler');
    await sleep(100);
    expect(seen).toEqual(['both:order.>:order.created.eu:8']);
  });

  it('refuses a malformed wildcard pattern, and a wildcard inside an object pattern, when the handler is registered', () => {
    expect(() => responder('bad').handle('order.>.x', () => 1)).toThrow(TopicPatternError);
    expect(() => responder('bad2').onEvent('order..*', () => 1)).toThrow(TopicPatternError);
    expect(() => responder('bad3').handle({ cmd: 'order.*' }, () => 1)).toThrow(TopicPatternError);
  });

  it('publishes on a wildcard channel only once it knows an instance bound there; from its hello on, the instance is reached', async () => {
    const exact = responder('exact').handle('audit.login', () => 'exact');
    await exact.listen();
    await caller.connect();
    // A subscriber on the wildcard channel that no instance announced (not an instance): the caller
    // does not know the binding, so it does not publish there.
    const observer = new Redis(redis.url);
    const observed: string[] = [];
    observer.on('message', (channel: string) => observed.push(channel));
    await observer.subscribe(`${namespace}:req:audit.>`);
    const before = await caller.gather<string>('audit.login', null);
    expect(before).toMatchObject({ completedBy: 'all', expected: 1, finished: 1, observers: 0 });
    expect(observed).toEqual([]);

    const late = responder('late').handle('audit.>', () => 'late');
    await late.listen();
    await until(() => caller.knownInstances().some((instance) => instance.instanceId === 'late'), "the late instance's hello");
    const after = await caller.gather<string>('audit.login', null);
    // The observer on the same channel is counted by Redis and does not answer: it is an observer.
    expect(after).toMatchObject({ completedBy: 'all', expected: 3, finished: 2, missing: [], observers: 1 });
    expect(after.replies.map((reply) => reply.data).sort()).toEqual(['exact', 'late']);
    expect(observed).toEqual([`${namespace}:req:audit.>`]);
    await observer.quit();
  });

  it('by hand on the wire: one request published on two matching channels gets one answer and one repeat reply; one on a channel whose binding does not match it is refused', async () => {
    const r = responder('wire').handle('order.*', answer('wire', 'order.*')).handle('order.>', answer('wire', 'order.>'));
    await r.listen();
    const inbox = `${namespace}:inbox:by-hand`;
    const listener = new Redis(redis.url);
    const publisher = new Redis(redis.url);
    const received: Array<Record<string, unknown>> = [];
    // One message may carry several envelopes (a batch).
    listener.on('message', (_channel: string, message: string) => received.push(...([] as Array<Record<string, unknown>>).concat(JSON.parse(message) as Record<string, unknown>)));
    await listener.subscribe(inbox);
    const request = (id: string, pattern: string): string => JSON.stringify({ ttl: 2000, v: 1, kind: 'request', id, pattern, from: 'by-hand', replyTo: inbox, data: null });
    // The caller's side of a topic request: the topic's own channel (nobody), then each matching binding's.
    const counts = [
      await publisher.publish(`${namespace}:req:order.created`, request('t1', 'order.created')),
      await publisher.publish(`${namespace}:req:order.*`, request('t1', 'order.created')),
      await publisher.publish(`${namespace}:req:order.>`, request('t1', 'order.created')),
    ];
    expect(counts).toEqual([0, 1, 1]);
    await publisher.publish(`${namespace}:req:order.*`, request('t2', 'invoice.created'));
    await until(() => received.length >= 3, `the replies, got ${JSON.stringify(received)}`);
    await sleep(100);
    const byId = (id: string) => received.filter((reply) => reply.id === id);
    expect(byId('t1')).toEqual(
      expect.arrayContaining([
        { v: 1, kind: 'reply', id: 't1', from: 'wire', seq: 0, done: true, data: { instanceId: 'wire', binding: 'order.*', topic: 'order.created' } },
        { v: 1, kind: 'reply', id: 't1', from: 'wire', seq: 0, done: true, repeat: 'order.>' },
      ]),
    );
    expect(byId('t1')).toHaveLength(2);
    expect(byId('t2')).toEqual([expect.objectContaining({ id: 't2', done: true, refused: true, error: expect.objectContaining({ code: 'BUFFER_BAD_REQUEST' }) })]);
    expect(r.stats.repeatDeliveries).toBe(1);
    await Promise.all([listener.quit(), publisher.quit()]);
  });
});
