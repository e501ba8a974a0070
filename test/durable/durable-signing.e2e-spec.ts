// Signed stream entries and the size limit on durable reads, against a real redis-server: entries
// written by something without the key (redis-cli, plain ioredis, a forged or foreign signature),
// idempotency markers written ahead by an attacker, an oversized entry, and key rotation.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { BufferClient, type DurableConsumer, type DurableDelivery } from 'nestjs-redis-buffer';
import type { Redis } from 'ioredis';
import { sleep } from '../support/raw-redis.js';
import { useRedisServer, type TestRedis } from '../support/redis-server.js';
import { report, startConsumer, waitFor, type MemoryLogger } from '../support/durable.js';

const run = promisify(execFile);
const FAST = { claimIdle: 300, claimInterval: 100, retryDelay: 10, maxRetryDelay: 20, maxAttempts: 1 } as const;
const OLD = 'the-old-signing-key-0123456789abcdef';
const NEW = 'the-new-signing-key-0123456789abcdef';

describe('durable: signed entries and the size limit', () => {
  let redis: TestRedis;
  let raw: Redis;
  let namespace: string;
  let counter = 0;
  const clients: BufferClient[] = [];
  let consumers: DurableConsumer[] = [];

  useRedisServer((server, connection) => {
    redis = server;
    raw = connection;
  });

  beforeEach(() => {
    namespace = `sig${++counter}`;
  });

  afterEach(async () => {
    await Promise.all(consumers.map((consumer) => consumer.close()));
    consumers = [];
    await Promise.all(clients.splice(0).map((client) => client.close()));
    inspector = undefined;
  });

  function client(signingKey: string | string[] | undefined): BufferClient {
    const made = new BufferClient({ redis: redis.url, namespace, durable: FAST, signingKey });
    clients.push(made);
    return made;
  }

  async function consume(signingKey: string | string[] | undefined, ran: DurableDelivery[], extra: { maxPayloadBytes?: number; group?: string; fail?: () => boolean; fromBeginning?: boolean } = {}): Promise<{ consumer: DurableConsumer; logger: MemoryLogger }> {
    const started = await startConsumer(
      redis.url,
      namespace,
      `c${consumers.length + 1}`,
      [
        {
          pattern: 'work',
          group: extra.group ?? 'g',
          run: async (delivery) => {
            ran.push(delivery);
            if (extra.fail?.()) throw new Error('fails this time');
          },
        },
      ],
      extra.fromBeginning ? { ...FAST, newGroupStartsAt: 'beginning' } : FAST,
      { signingKey, maxPayloadBytes: extra.maxPayloadBytes },
    );
    consumers.push(started.consumer);
    return started;
  }

  const stream = (): string => `${namespace}:durable:{work}`;
  let inspector: BufferClient | undefined;
  const deadLetters = async (group = 'g') => (inspector ??= client(NEW)).durable.deadLetters('work', group);

  it('dead-letters, unrun and counted, an unsigned entry from redis-cli and from plain ioredis, and one with a made-up or foreign signature, saying why', async () => {
    const ran: DurableDelivery[] = [];
    const { consumer, logger } = await consume(NEW, ran);
    const { stdout } = await run('redis-cli', ['-u', redis.url, 'XADD', stream(), '*', 'v', '1', 'pattern', 'work', 'data', '{"by":"cli"}', 'from', 'admin']);
    const fromCli = stdout.trim();
    const fromIoredis = (await raw.xadd(stream(), '*', 'v', '1', 'pattern', 'work', 'data', '{"by":"ioredis"}', 'headers', '{"role":"admin"}')) as string;
    const madeUp = (await raw.xadd(stream(), '*', 'v', '1', 'pattern', 'work', 'data', '{"by":"made-up"}', 'sig', 'a'.repeat(64))) as string;
    // A genuine entry of another namespace's stream, copied here whole, signature included.
    const elsewhere = new BufferClient({ redis: redis.url, namespace: `${namespace}-other`, signingKey: NEW });
    clients.push(elsewhere);
    const otherId = await elsewhere.durable.publish('work', { by: 'copied' });
    const [[, otherFields]] = (await raw.xrange(`${namespace}-other:durable:{work}`, otherId, otherId)) as Array<[string, string[]]>;
    const copied = (await raw.xadd(stream(), '*', ...otherFields!)) as string;
    const genuine = await client(NEW).durable.publish('work', { by: 'genuine' });
    await waitFor('four dead letters', async () => (await deadLetters()).length === 4);
    await waitFor('the genuine entry ran', () => ran.length === 1);
    await sleep(200);
    expect(ran.map((delivery) => [delivery.entryId, delivery.data])).toEqual([[genuine, { by: 'genuine' }]]);
    const dead = await deadLetters();
    expect(dead.map((letter) => letter.entryId)).toEqual([fromCli, fromIoredis, madeUp, copied]);
    const reasons = dead.map((letter) => (letter.error as { reason: string }).reason);
    expect(reasons).toEqual(['unsigned', 'unsigned', 'forged', 'forged']);
    expect(dead[0]!.error).toMatchObject({ code: 'BUFFER_BAD_ENTRY', message: expect.stringContaining('it is not signed, and signing is on') });
    expect(dead[2]!.error).toMatchObject({ code: 'BUFFER_BAD_ENTRY', message: expect.stringContaining('its signature is not valid for this stream') });
    for (const id of [fromCli, fromIoredis, madeUp, copied]) {
      expect(logger.lines.some((line) => line.startsWith('warn') && line.includes(id) && line.includes('moved to the dead-letter stream'))).toBe(true);
    }
    expect(consumer.stats).toMatchObject({ forged: 4, deadLettered: 4, runs: 1, handled: 1 });
  }, 30_000);

  it('runs a genuine publish once although an attacker wrote its idempotency markers (published and handled) first', async () => {
    const ran: DurableDelivery[] = [];
    const { consumer } = await consume(NEW, ran);
    const signed = client(NEW);
    // What an attacker who guessed the idempotency key can write: the markers as the unsigned
    // scheme names them, and an entry claiming that key.
    await raw.set(`${stream()}:published:order-7`, '1-1', 'PX', 60_000);
    await raw.set(`${stream()}:handled:g:order-7`, 'done', 'PX', 60_000);
    const forged = (await raw.xadd(stream(), '*', 'v', '1', 'pattern', 'work', 'data', '{"forged":true}', 'idem', 'order-7')) as string;
    await waitFor('the forged entry dead-lettered', async () => (await deadLetters()).length === 1);
    const id = await signed.durable.publish('work', { order: 7 }, { idempotencyKey: 'order-7' });
    expect(id).not.toBe('1-1');
    expect(id).not.toBe(forged);
    await waitFor('the genuine entry ran', () => ran.length === 1);
    // The publisher's own retry is still deduplicated, and the group still runs it once.
    expect(await signed.durable.publish('work', { order: 7 }, { idempotencyKey: 'order-7' })).toBe(id);
    await raw.xadd(stream(), '*', ...(((await raw.xrange(stream(), id, id)) as Array<[string, string[]]>)[0]![1]));
    await waitFor('the copy acknowledged as a duplicate', () => consumer.stats.duplicates === 1);
    await sleep(200);
    expect(ran.map((delivery) => [delivery.entryId, delivery.data])).toEqual([[id, { order: 7 }]]);
    expect(consumer.stats).toMatchObject({ forged: 1, handled: 1, duplicates: 1 });
  }, 30_000);

  it('dead-letters unread an entry over maxPayloadBytes, keeping only its small fields, and counts it', async () => {
    const ran: DurableDelivery[] = [];
    const { consumer, logger } = await consume(NEW, ran, { maxPayloadBytes: 64 * 1024 });
    // Written by another process, so that this one's memory holds only what the consumer took in.
    const blobBytes = 20 * 1024 * 1024;
    const rssBefore = process.memoryUsage().rss;
    const writer = `import { Redis } from 'ioredis';
      const redis = new Redis(process.argv[1]);
      const data = JSON.stringify({ blob: 'x'.repeat(${blobBytes}) });
      process.stdout.write(await redis.xadd(process.argv[2], '*', 'v', '1', 'pattern', 'work', 'key', 'k1', 'data', data, 'headers', '{}'));
      redis.disconnect();`;
    const big = (await run(process.execPath, ['--input-type=module', '-e', writer, redis.url, stream()], { cwd: process.cwd() })).stdout.trim();
    const small = await client(NEW).durable.publish('work', { small: true }, { key: 'k1' });
    await waitFor('the oversized entry dead-lettered', async () => (await deadLetters()).length === 1);
    // Counted handled once its acknowledgement returns, a moment after the handler ran.
    await waitFor('the next entry of its key ran and was acknowledged', () => ran.length === 1 && consumer.stats.handled === 1);
    const rssAfter = process.memoryUsage().rss;
    const data = JSON.stringify({ blob: 'x'.repeat(blobBytes) });
    const [dead] = await deadLetters();
    expect(dead!.entryId).toBe(big);
    expect(dead!.error).toMatchObject({ code: 'BUFFER_BAD_ENTRY', reason: 'oversized', message: expect.stringContaining(`over "maxPayloadBytes" (65536)`) });
    const size = 'v1patternworkkeyk1data'.length + data.length + 'headers{}'.length;
    expect(dead!.fields).toEqual(['v', '1', 'pattern', 'work', 'key', 'k1', 'oversized', String(size)]);
    expect(ran.map((delivery) => delivery.entryId)).toEqual([small]);
    expect(consumer.stats).toMatchObject({ oversized: 1, deadLettered: 1, handled: 1 });
    expect(logger.lines.some((line) => line.startsWith('warn') && line.includes(big) && line.includes('oversized'))).toBe(true);
    const deadBytes = ((await raw.xrange(`${stream()}:dead:g`, '-', '+')) as Array<[string, string[]]>)[0]![1].join('').length;
    report('oversized-entry', { entryBytes: size, deadLetterBytes: deadBytes, rssDeltaMB: Math.round((rssAfter - rssBefore) / 1e5) / 10 });
  }, 30_000);

  it('round-trips with a rotating key list: signs with the first, accepts any, deduplicates across the change, replays a dead letter', async () => {
    const ran: DurableDelivery[] = [];
    let fail = false;
    const { consumer } = await consume([NEW, OLD], ran, { fail: () => fail });
    const onlyNew: DurableDelivery[] = [];
    const strict = await consume(NEW, onlyNew, { group: 'strict' });
    const byOld = await client(OLD).durable.publish('work', { by: 'old' }, { idempotencyKey: 'rot-1' });
    // A publisher already on the new key: its retry of the same idempotency key finds the old marker.
    const rotated = client([NEW, OLD]);
    expect(await rotated.durable.publish('work', { by: 'retry' }, { idempotencyKey: 'rot-1' })).toBe(byOld);
    const byNew = await rotated.durable.publish('work', { by: 'new' });
    await waitFor('both ran in the rotating group', () => ran.length === 2);
    expect(ran.map((delivery) => delivery.entryId).sort()).toEqual([byOld, byNew].sort());
    // A consumer that dropped the old key refuses what it signed.
    await waitFor('the strict group dead-lettered the old-key entry', async () => (await deadLetters('strict')).length === 1);
    await waitFor('and ran the new one', () => onlyNew.length === 1);
    expect(onlyNew[0]!.entryId).toBe(byNew);
    expect((await deadLetters('strict'))[0]).toMatchObject({ entryId: byOld, error: { reason: 'forged' } });
    expect(strict.consumer.stats).toMatchObject({ forged: 1, handled: 1 });
    // A signed entry's dead letter replays (the replay's `group` field is outside the signature).
    fail = true;
    const failing = await rotated.durable.publish('work', { by: 'failing' });
    await waitFor('a dead letter', async () => (await deadLetters()).length === 1);
    fail = false;
    const [dead] = await deadLetters();
    expect(dead!.entryId).toBe(failing);
    await rotated.durable.replayDeadLetter('work', 'g', dead!.id);
    await waitFor('the replay ran', () => ran.length === 4);
    expect(ran[3]!.data).toEqual({ by: 'failing' });
    expect(consumer.stats).toMatchObject({ forged: 0, handled: 3, deadLettered: 1 });
  }, 30_000);

  it('leaves unsigned deployments as they were, and dead-letters, once signing is on, what was written before', async () => {
    const ran: DurableDelivery[] = [];
    const before = await client(undefined).durable.publish('work', { n: 1 }, { idempotencyKey: 'pre' });
    const unsigned = await consume(undefined, ran, { group: 'plain' });
    await waitFor('the unsigned group ran it', () => ran.length === 1);
    expect(unsigned.consumer.stats).toMatchObject({ handled: 1, forged: 0 });
    expect(await raw.exists(`${stream()}:published:pre`, `${stream()}:handled:plain:pre`)).toBe(2);
    const signedRan: DurableDelivery[] = [];
    // A new group starts at the stream's beginning (the default): it reads what was written before signing.
    const signed = await consume(NEW, signedRan, { group: 'signed', fromBeginning: true });
    await waitFor('the pre-signing entry dead-lettered', async () => (await deadLetters('signed')).length === 1);
    expect((await deadLetters('signed'))[0]).toMatchObject({ entryId: before, error: { reason: 'unsigned' } });
    expect(signedRan).toEqual([]);
    expect(signed.consumer.stats).toMatchObject({ forged: 1 });
  }, 30_000);
});
