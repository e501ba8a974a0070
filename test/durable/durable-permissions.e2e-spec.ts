// Durable messaging as Redis ACL users holding exactly the documented least-privilege rules, and
// the same rules with one permission taken away at a time: the start-up (consumer) or the first
// publish (publisher) fails at once with RedisPermissionError naming what is missing; a permission
// taken away while running surfaces as RedisPermissionError too, never as a raw NOPERM.
import { BufferClient, RedisPermissionError, durableAclRule, type DurableConsumer, type DurableDelivery } from 'nestjs-redis-buffer';
import type { Redis } from 'ioredis';
import { useRedisServer, type TestRedis } from '../support/redis-server.js';
import { startConsumer, waitFor, type MemoryLogger } from '../support/durable.js';

const FAST = { claimIdle: 300, claimInterval: 100, retryDelay: 10, maxRetryDelay: 20, maxAttempts: 1, maxLength: 10_000 } as const;
const KEY = 'a-signing-key-of-enough-length-0123';
const CONNECTION = ['+auth', '+hello', '+info', '+ping', '+client|setname', '+quit'];
// The rules as docs/reliability.md gives them, for namespace "perm".
const BINDING = ['+sadd', '+incr'];
const PUBLISHER = ['resetkeys', '~perm:durable:*', '-@all', '+evalsha', '+eval', '+get', '+set', '+xadd', '+xrange', '+xdel', '+hgetall', '+exists', '+xlen', '+xinfo|groups', '+xpending', '+xtrim', '+smembers', '+srem', '+incr', '+wait', ...CONNECTION];
const CONSUMER = [
  'resetkeys', '~perm:durable:*', 'resetchannels', '&perm:durable:*', '-@all',
  '+evalsha', '+eval', '+xgroup|create', '+xgroup|delconsumer', '+xreadgroup', '+xread', '+xautoclaim', '+xclaim', '+xack', '+xpending', '+xinfo|groups', '+xinfo|consumers', '+xadd', '+xrange', '+xrevrange',
  '+xlen', '+xtrim', '+exists', '+zadd', '+zrem', '+zrangebylex', '+hget', '+hset', '+hgetall', '+hdel', '+get', '+set', '+del', '+pexpire', '+publish', '+subscribe', '+sadd', '+incr',
  ...CONNECTION,
];

describe('durable messaging under least-privilege ACL users', () => {
  let redis: TestRedis;
  let admin: Redis;
  let users = 0;
  const closing: Array<{ close(): Promise<void> }> = [];

  useRedisServer((server, connection) => {
    redis = server;
    admin = connection;
  });

  afterEach(async () => {
    await Promise.all(closing.splice(0).map((thing) => thing.close()));
  });

  /** A new ACL user with `rule`; its connection URL. */
  async function user(rule: readonly string[]): Promise<{ name: string; url: string }> {
    const name = `u${++users}`;
    await admin.call('ACL', 'SETUSER', name, 'reset', 'on', '>pw', ...rule);
    return { name, url: `redis://${name}:pw@${new URL(redis.url).host}` };
  }

  async function consume(url: string, run: (delivery: DurableDelivery) => Promise<void> = async () => undefined): Promise<{ consumer: DurableConsumer; logger: MemoryLogger }> {
    const started = await startConsumer(url, 'perm', `c${users}`, [{ pattern: 'work', group: 'g', run }], FAST, { signingKey: KEY });
    closing.push(started.consumer);
    return started;
  }

  function client(url: string): BufferClient {
    const made = new BufferClient({ redis: url, namespace: 'perm', durable: FAST, signingKey: KEY });
    closing.push(made);
    return made;
  }

  it('documents exactly the rules the library builds', () => {
    expect(durableAclRule('perm', 'publisher')).toBe(`ACL SETUSER <user> on ><password> ${PUBLISHER.join(' ')}`);
    expect(durableAclRule('perm', 'consumer')).toBe(`ACL SETUSER <user> on ><password> ${CONSUMER.join(' ')}`);
  });

  it('publishes, runs, orders, deduplicates, dead-letters, replays and trims with exactly these rules', async () => {
    const consumerUser = await user(CONSUMER);
    const publisherUser = await user(PUBLISHER);
    const ran: unknown[] = [];
    const { consumer, logger } = await consume(consumerUser.url, async (delivery) => {
      ran.push(delivery.data);
      if ((delivery.data as { fail?: boolean }).fail) throw new Error('fails');
    });
    const publisher = client(publisherUser.url);
    for (let n = 0; n < 5; n++) await publisher.durable.publish('work', { n }, { key: 'k' });
    const once = await publisher.durable.publish('work', { n: 5 }, { idempotencyKey: 'once' });
    expect(await publisher.durable.publish('work', { n: 5 }, { idempotencyKey: 'once' })).toBe(once);
    await publisher.durable.publish('work', { fail: true });
    await waitFor('a dead letter', async () => (await publisher.durable.deadLetters('work', 'g')).length === 1);
    await waitFor('every entry ran', () => ran.length === 7);
    expect(ran.filter((data) => ((data as { n?: number }).n ?? 99) < 5)).toEqual([0, 1, 2, 3, 4].map((n) => ({ n })));
    const [dead] = await publisher.durable.deadLetters('work', 'g');
    await publisher.durable.replayDeadLetter('work', 'g', dead!.id);
    await waitFor('the replay ran', () => ran.length === 8);
    await consumer.trimAll();
    await publisher.durable.trim('work');
    await consumer.sampleBacklog();
    expect(consumer.stats).toMatchObject({ handled: 6, deadLettered: 2, redisErrors: 0 });
    expect(logger.lines.filter((line) => line.startsWith('warn') && !line.includes('moved to the dead-letter stream'))).toEqual([]);
  }, 30_000);

  // What the consumer rule loses, and what the error must tell to grant.
  const consumerCases: Array<[string, string]> = [
    // SADD and INCR register wildcard bindings (durable topics): the case below, for a consumer bound to one.
    ...CONSUMER.filter((token) => token.startsWith('+') && !CONNECTION.includes(token) && !BINDING.includes(token)).map((token): [string, string] => [token, token]),
    ['~perm:durable:*', '~perm:durable:*'],
    ['&perm:durable:*', '&perm:durable:*'],
  ];

  it.each(consumerCases)('a consumer without %s fails to start with RedisPermissionError naming %s', async (removed, named) => {
    const { url } = await user(CONSUMER.filter((token) => token !== removed));
    const error = await consume(url).then(
      () => undefined,
      (failure: unknown) => failure,
    );
    expect(error).toBeInstanceOf(RedisPermissionError);
    const message = (error as RedisPermissionError).message;
    expect(message).toContain(`grant the Redis user ${named}`);
    expect(message).toContain(durableAclRule('perm', 'consumer'));
    if (named.startsWith('+')) expect(message.startsWith(`Redis refused ${named.slice(1).toUpperCase()}`)).toBe(true);
    expect((error as RedisPermissionError).code).toBe('BUFFER_REDIS_PERMISSION');
  }, 15_000);

  const publisherCases: Array<[string, 'publish' | 'deadLetters']> = [
    ['+evalsha', 'publish'],
    ['+eval', 'publish'],
    ['+get', 'publish'],
    ['+set', 'publish'],
    ['+xadd', 'publish'],
    ['~perm:durable:*', 'publish'],
    ['+xrange', 'deadLetters'],
  ];

  it.each(publisherCases)('a publisher without %s fails its first %s with RedisPermissionError naming it', async (removed, call) => {
    const { url } = await user(PUBLISHER.filter((token) => token !== removed));
    const publisher = client(url);
    const error = await (call === 'publish' ? publisher.durable.publish('work', { n: 1 }) : publisher.durable.deadLetters('work', 'g')).then(
      () => undefined,
      (failure: unknown) => failure,
    );
    expect(error).toBeInstanceOf(RedisPermissionError);
    expect((error as Error).message).toContain(`grant the Redis user ${removed}`);
    expect((error as Error).message).toContain(durableAclRule('perm', 'publisher'));
  }, 15_000);

  it.each(BINDING)('a consumer bound to a wildcard topic without %s fails to start with RedisPermissionError', async (removed) => {
    const { url } = await user(CONSUMER.filter((token) => token !== removed));
    const error = await startConsumer(url, 'perm', `c${users}`, [{ pattern: 'work.*', group: 'g', run: async () => undefined }], FAST, { signingKey: KEY }).then(
      (started) => {
        closing.push(started.consumer);
        return undefined;
      },
      (failure: unknown) => failure,
    );
    expect(error).toBeInstanceOf(RedisPermissionError);
    // From inside a script Redis 7.0 does not name the command: the message names the script and the whole rule.
    expect((error as Error).message).toContain('the bind script');
    expect((error as Error).message).toContain(durableAclRule('perm', 'consumer'));
  }, 15_000);

  it('a publisher without +wait fails its first publish with durable.replicas with RedisPermissionError naming it, before writing anything', async () => {
    const { url } = await user(PUBLISHER.filter((token) => token !== '+wait'));
    const publisher = client(url);
    // Without replicas it never sends WAIT: allowed.
    await publisher.durable.publish('work', { n: 1 });
    const stream = publisher.durable.keysFor('work').stream;
    const before = await admin.xlen(stream);
    const error = await publisher.durable.publish('work', { n: 2 }, { replicas: { min: 1, timeout: 100 } }).then(
      () => undefined,
      (failure: unknown) => failure,
    );
    expect(error).toBeInstanceOf(RedisPermissionError);
    expect((error as Error).message).toContain('grant the Redis user +wait');
    expect(await admin.xlen(stream)).toBe(before);
  }, 15_000);

  it('a publisher without +smembers fails a publish to a topic once a wildcard binding exists, naming it', async () => {
    const consumerUser = await user(CONSUMER);
    const started = await startConsumer(consumerUser.url, 'perm', `c${users}`, [{ pattern: 'work.*', group: 'g', run: async () => undefined }], FAST, { signingKey: KEY });
    closing.push(started.consumer);
    const { url } = await user(PUBLISHER.filter((token) => token !== '+smembers'));
    const error = await client(url).durable.publish('work.created', { n: 1 }).then(
      () => undefined,
      (failure: unknown) => failure,
    );
    expect(error).toBeInstanceOf(RedisPermissionError);
    expect((error as Error).message).toContain('grant the Redis user +smembers');
    // With the rule whole, the same publish reaches the wildcard group's stream.
    const whole = await user(PUBLISHER);
    await client(whole.url).durable.publish('work.created', { n: 2 });
  }, 15_000);

  it('a bind refused part-way (no INCR) does not hide the binding from publishers once a consumer binds it again', async () => {
    const { url } = await user(CONSUMER.filter((token) => token !== '+incr'));
    await expect(startConsumer(url, 'perm', `c${users}`, [{ pattern: 'cut.*', group: 'g', run: async () => undefined }], FAST, { signingKey: KEY })).rejects.toBeInstanceOf(RedisPermissionError);
    const ran: unknown[] = [];
    const whole = await user(CONSUMER);
    const started = await startConsumer(whole.url, 'perm', `c${users}`, [{ pattern: 'cut.*', group: 'g', run: async (delivery) => void ran.push(delivery.data) }], FAST, { signingKey: KEY });
    closing.push(started.consumer);
    await client((await user(PUBLISHER)).url).durable.publish('cut.created', { n: 1 });
    await waitFor('the entry routed to the wildcard group', () => ran.length === 1);
  }, 15_000);

  it('a permission taken away while running surfaces as RedisPermissionError, never as a raw NOPERM', async () => {
    const consumerUser = await user(CONSUMER);
    const publisherUser = await user(PUBLISHER);
    const ran: unknown[] = [];
    // A pattern of its own: earlier cases leave entries in the "work" stream.
    const { consumer, logger } = await startConsumer(consumerUser.url, 'perm', `c${users}`, [{ pattern: 'revoked', group: 'g', run: async (delivery) => void ran.push(delivery.data) }], FAST, { signingKey: KEY });
    closing.push(consumer);
    const publisher = client(publisherUser.url);
    await publisher.durable.publish('revoked', { n: 1 });
    await waitFor('the first entry handled', () => consumer.stats.handled === 1);
    await admin.call('ACL', 'SETUSER', consumerUser.name, '-xack');
    await admin.call('ACL', 'SETUSER', publisherUser.name, '-xadd');
    const error = await publisher.durable.publish('revoked', { n: 2 }).then(
      () => undefined,
      (failure: unknown) => failure,
    );
    expect(error).toBeInstanceOf(RedisPermissionError);
    expect((error as Error).message).toContain('Redis refused a command of EVALSHA (the publish script)');
    await admin.call('ACL', 'SETUSER', publisherUser.name, '+xadd');
    await publisher.durable.publish('revoked', { n: 3 });
    await waitFor('the acknowledgement refused and reported', () => logger.lines.some((line) => line.includes('RedisPermissionError')));
    const reports = logger.lines.filter((line) => line.includes('failed:'));
    expect(reports.length).toBeGreaterThan(0);
    for (const line of reports) {
      expect(line).toContain('RedisPermissionError: Redis refused a command of a durable script or command');
      expect(line).toContain(durableAclRule('perm', 'consumer'));
    }
    expect(ran).toEqual([{ n: 1 }, { n: 3 }]);
    expect(consumer.stats.redisErrors).toBeGreaterThan(0);
  }, 30_000);
});
