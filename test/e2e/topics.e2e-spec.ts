// Topics end to end: Nest instances with wildcard bindings (@BufferedPattern('order.*'),
// @BufferedEvent('order.>')…) in separate processes on a real redis-server, asked by a BufferClient.
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { lastValueFrom } from 'rxjs';
import { BufferClient, NoRespondersError } from 'nestjs-redis-buffer';
import { FIXTURE_APP, InstanceProcess, InstanceSpawner } from '../support/instances.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { quietLogs } from '../support/captured-logs.js';

const TOPIC_APP = join(FIXTURE_APP, '..', 'topic-app.js');

interface Answer {
  instanceId: string;
  binding: string;
  topic: string;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await sleep(20);
  }
}

const answers = (replies: ReadonlyArray<{ data: Answer }>): string[] => replies.map((reply) => `${reply.data.instanceId} ${reply.data.binding}`).sort();

describe('topics (wildcard patterns) across processes', () => {
  quietLogs([]);
  let redis: TestRedis;
  let client: BufferClient;
  let namespace: string;
  let spawner: InstanceSpawner;
  let next = 0;

  beforeAll(async () => {
    redis = await startRedis();
  });

  beforeEach(() => {
    namespace = `topics${next++}`;
    spawner = new InstanceSpawner(() => redis.url, namespace, TOPIC_APP);
    client = new BufferClient({ redis: redis.url, namespace, instanceId: 'topic-caller', timeout: 8000 });
  });

  afterEach(async () => {
    await client.close();
    await spawner.stopAll();
  });

  afterAll(async () => {
    await redis?.stop();
  });

  async function startOverlapping(): Promise<void> {
    await Promise.all([
      spawner.spawn('all-three', { BINDINGS: 'exact,star,rest' }),
      spawner.spawn('star', { BINDINGS: 'star' }),
      spawner.spawn('rest', { BINDINGS: 'rest' }),
      spawner.spawn('none', { BINDINGS: '' }),
    ]);
    await client.connect();
  }

  it('gathers from every instance whose bindings match, once each, with exact counts when one instance binds three matching patterns', async () => {
    await startOverlapping();
    const created = await client.gather<Answer>('order.created', null);
    expect(created).toMatchObject({ completedBy: 'all', expected: 3, finished: 3, missing: [], observers: 0, errors: [] });
    // The most specific of an instance's matching handlers answers.
    expect(answers(created.replies)).toEqual(['all-three order.created', 'rest order.>', 'star order.*']);
    for (const reply of created.replies) expect(reply.data.topic).toBe('order.created');

    const deep = await client.gather<Answer>('order.created.eu', null);
    expect(deep).toMatchObject({ completedBy: 'all', expected: 2, finished: 2, missing: [] });
    expect(answers(deep.replies)).toEqual(['all-three order.>', 'rest order.>']);

    // send() emits each instance's value once, and completes.
    const values: Answer[] = [];
    await new Promise<void>((resolve, reject) => client.send<Answer>('order.paid', null).subscribe({ next: (value) => values.push(value), error: reject, complete: resolve }));
    expect(values.map((value) => `${value.instanceId} ${value.binding}`).sort()).toEqual(['all-three order.*', 'rest order.>', 'star order.*']);

    await expect(client.gather('invoice.created', null)).rejects.toBeInstanceOf(NoRespondersError);
  });

  it('emits to every instance with a matching binding once; an instance runs each of its matching event handlers once', async () => {
    await startOverlapping();
    const deliveries = await lastValueFrom(client.emit<number>('order.created', 1));
    // all-three is reached on three channels, star and rest on one each: three instances.
    expect(deliveries).toBe(3);
    const seen = async (): Promise<Record<string, string[]>> => {
      const result = await client.gather<string[]>('events.seen', null);
      return Object.fromEntries(result.replies.map((reply) => [reply.instanceId, [...reply.data].sort()]));
    };
    await until(async () => Object.values(await seen()).flat().length >= 5, 'the event handlers');
    await sleep(200);
    expect(await seen()).toEqual({
      'all-three': ['order.*:order.created:1', 'order.>:order.created:1', 'order.created:order.created:1'],
      star: ['order.*:order.created:1'],
      rest: ['order.>:order.created:1'],
      none: [],
    });
  });

  it('names an instance killed (SIGKILL) mid-gather as missing, once, though three of its channels carried the request', async () => {
    await startOverlapping();
    const gathering = client.gather<Answer>('order.created', 1500);
    await sleep(300);
    await spawner.spawned.find((instance) => instance.id === 'all-three')!.stop('SIGKILL');
    const result = await gathering;
    expect(result).toMatchObject({ completedBy: 'all', expected: 3, finished: 2, missing: ['all-three'] });
    expect(['unreachable', 'silent', 'left']).toContain(result.missingReasons['all-three']);
    expect(answers(result.replies)).toEqual(['rest order.>', 'star order.*']);
    expect(result.elapsedMs).toBeLessThan(6000);
  });

  it('reaches a wildcard binding once its instance has said hello; before that, a subscriber on that channel is not published to', async () => {
    await Promise.all([spawner.spawn('exact-only', { BINDINGS: 'exact' })]);
    await client.connect();
    const observer = new Redis(redis.url);
    const observed: string[] = [];
    observer.on('message', (channel: string) => observed.push(channel));
    await observer.subscribe(`${namespace}:req:audit.>`);
    // Nobody announced audit.>: not published there, and nobody else handles the topic.
    await expect(client.gather('audit.login', null)).rejects.toBeInstanceOf(NoRespondersError);
    expect(observed).toEqual([]);

    const late = await spawner.spawn('late-audit', { BINDINGS: 'audit' });
    await until(() => client.knownInstances().some((instance) => instance.instanceId === late.id), "the late instance's hello");
    const result = await client.gather<Answer>('audit.login', null);
    expect(result).toMatchObject({ completedBy: 'all', expected: 2, finished: 1, missing: [], observers: 1 });
    expect(answers(result.replies)).toEqual(['late-audit audit.>']);
    expect(observed).toEqual([`${namespace}:req:audit.>`]);
    await observer.quit();
  });

  it('refuses to start an instance with a malformed wildcard, or a wildcard inside an object pattern, with TopicPatternError', async () => {
    await expect(spawner.spawn('bad', { BINDINGS: 'bad' })).rejects.toThrow(/TopicPatternError: .*Invalid topic pattern "order\.>\.x": ">" is allowed only as the last token/s);
    await expect(spawner.spawn('object', { BINDINGS: 'object' })).rejects.toThrow(/TopicPatternError: .*Invalid topic pattern "order\.\*": wildcards/s);
  });
});
