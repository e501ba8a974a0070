// A port of Watermill's universal Pub/Sub test suite (pubsub/tests/test_pubsub.go) to durable
// messaging: the cases that apply to a consumer-group stream, with Watermill's message counts.
// Watermill's "subscriber" is a consumer here (one instance of a group); "Nack" is a handler that
// throws; "Ack" is a handler that returns. Each case prints "WATERMILL <case> {counts}".
//
// By default the counts are Watermill's -short ones; WATERMILL_FULL=1 uses its full counts and
// WATERMILL_RUNS=n repeats the suite n times (`npm run test:stress`, Watermill's stress mode).
//
// Not ported: TestMessageCtx and TestSubscribeCtx (Go contexts; the closest equivalent, closing a
// consumer right after it started, is ContinueAfterSubscribeClose and ConcurrentClose), and
// ExactlyOnceDelivery variants (at-least-once here: reads are deduplicated, as Watermill does for
// such Pub/Subs, and every case also reports the duplicates it saw).
import { randomUUID } from 'node:crypto';
import { BufferClient, type DurableConsumer, type DurableDelivery, type DurableOptions } from 'nestjs-redis-buffer';
import { DURABLE_AOF, startRedis, type TestRedis } from '../support/redis-server.js';
import { report as print, startConsumer, waitFor } from '../support/durable.js';
import { sleep } from '../support/raw-redis.js';

const FULL = process.env.WATERMILL_FULL === '1';
const RUNS = Number(process.env.WATERMILL_RUNS ?? 1);
const count = (full: number, short: number): number => (FULL ? full : short);
const DURABLE: DurableOptions = { claimIdle: 500, claimInterval: 100, retryDelay: 10, maxRetryDelay: 50, maxAttempts: 1000 };
const READ_TIMEOUT = FULL ? 120_000 : 30_000;
// Jest's default per-test timeout (5 s) is too short for the full counts with appendfsync always.
const CASE_TIMEOUT = READ_TIMEOUT + 30_000;

interface Message {
  uuid: string;
  num: number;
  payload?: string;
}

/** A Watermill "subscriber": one consumer of a group, collecting what its handler saw. */
class Subscriber {
  readonly received: Array<{ message: Message; delivery: DurableDelivery }> = [];
  private consumer: DurableConsumer | undefined;

  constructor(
    private readonly redisUrl: string,
    private readonly namespace: string,
    private readonly topic: string,
    private readonly group = 'cg',
    private readonly handle: (message: Message, delivery: DurableDelivery) => Promise<void> = async () => undefined,
  ) {}

  async start(): Promise<this> {
    const { consumer } = await startConsumer(
      this.redisUrl,
      this.namespace,
      `sub-${randomUUID().slice(0, 8)}`,
      [
        {
          pattern: this.topic,
          group: this.group,
          run: async (delivery) => {
            const message = delivery.data as Message;
            await this.handle(message, delivery);
            this.received.push({ message, delivery });
          },
        },
      ],
      DURABLE,
      { shutdownTimeout: 5000 },
    );
    this.consumer = consumer;
    return this;
  }

  close(): Promise<void> {
    return this.consumer?.close() ?? Promise.resolve();
  }
}

/** Distinct messages among what some subscribers received, and how many arrived more than once. */
function tally(subscribers: readonly Subscriber[]): { distinct: Map<string, Message>; duplicates: number } {
  const distinct = new Map<string, Message>();
  let total = 0;
  for (const subscriber of subscribers) {
    for (const { message } of subscriber.received) {
      distinct.set(message.uuid, message);
      total++;
    }
  }
  return { distinct, duplicates: total - distinct.size };
}

/** Watermill's bulkRead with deduplication: waits until every published message was received. */
async function bulkRead(subscribers: readonly Subscriber[], published: readonly Message[], timeoutMs = READ_TIMEOUT): Promise<{ received: number; duplicates: number; lost: number }> {
  await waitFor(`${published.length} messages`, () => tally(subscribers).distinct.size >= published.length, timeoutMs).catch(() => undefined);
  const { distinct, duplicates } = tally(subscribers);
  return { received: distinct.size, duplicates, lost: published.filter((message) => !distinct.has(message.uuid)).length };
}

for (let run = 1; run <= RUNS; run++) {
  describe(`Watermill's universal Pub/Sub suite on durable streams${RUNS > 1 ? ` (run ${run} of ${RUNS})` : ''}`, () => {
    let redis: TestRedis;
    let client: BufferClient;
    let namespace: string;
    const open: Subscriber[] = [];

    beforeAll(async () => {
      // The Reconnect case kills Redis.
      redis = await startRedis(DURABLE_AOF);
    });

    afterAll(async () => {
      await redis?.stop();
    });

    beforeEach(() => {
      namespace = `wm${randomUUID().slice(0, 8)}`;
      client = new BufferClient({ redis: redis.url, namespace, durable: DURABLE });
    });

    afterEach(async () => {
      await Promise.all(open.splice(0).map((subscriber) => subscriber.close()));
      await client.close();
    });

    const topic = (): string => `topic_${randomUUID()}`;
    async function subscriber(...args: ConstructorParameters<typeof Subscriber> extends [unknown, unknown, ...infer Rest] ? Rest : never): Promise<Subscriber> {
      const started = await new Subscriber(redis.url, namespace, ...args).start();
      open.push(started);
      return started;
    }
    async function publishSimple(name: string, messages: number, parallel = 1, options: (message: Message) => { key?: string; headers?: Record<string, string> } = () => ({})): Promise<Message[]> {
      const all = [...Array(messages).keys()].map((num) => ({ uuid: randomUUID(), num }));
      let next = 0;
      await Promise.all(
        [...Array(parallel).keys()].map(async () => {
          while (next < all.length) {
            const message = all[next++]!;
            await client.durable.publish(name, message, options(message));
          }
        }),
      );
      return all;
    }
    function report(name: string, values: Record<string, unknown>): void {
      print(`watermill ${name}`, values);
    }

    it('PublishSubscribe: 100 messages published before subscribing all arrive, with payloads and metadata', async () => {
      const name = topic();
      const published = [...Array(100).keys()].map((num) => ({ uuid: randomUUID(), num, payload: String(num), meta: randomUUID() }));
      for (const message of published) await client.durable.publish(name, message, { headers: { test: message.meta } });
      const sub = await subscriber(name);
      const counts = await bulkRead([sub], published);
      report('PublishSubscribe', { published: published.length, ...counts });
      expect(counts.lost).toBe(0);
      for (const { message, delivery } of sub.received) {
        const sent = published.find((p) => p.uuid === message.uuid)!;
        expect(message.payload).toBe(sent.payload);
        expect(delivery.headers.test).toBe(sent.meta);
      }
      await sub.close();
    }, CASE_TIMEOUT);

    it(`ConcurrentSubscribe: ${count(5000, 100)} messages to ${count(50, 10)} subscribers of one group all arrive`, async () => {
      const name = topic();
      const published = await publishSimple(name, count(5000, 100), 20);
      const subs = await Promise.all([...Array(count(50, 10)).keys()].map(() => subscriber(name)));
      const counts = await bulkRead(subs, published);
      report('ConcurrentSubscribe', { published: published.length, subscribers: subs.length, ...counts, busySubscribers: subs.filter((s) => s.received.length > 0).length });
      expect(counts.lost).toBe(0);
      expect(counts.duplicates).toBe(0);
    }, CASE_TIMEOUT);

    it('ResendOnError: the first 2 deliveries are nacked, and every message still arrives', async () => {
      const name = topic();
      const published = await publishSimple(name, 100);
      let nacks = 2;
      const sub = await subscriber(name, 'cg', async () => {
        if (nacks-- > 0) throw new Error('nack');
      });
      const counts = await bulkRead([sub], published);
      report('ResendOnError', { published: published.length, nacked: 2, ...counts });
      expect(counts.lost).toBe(0);
    }, CASE_TIMEOUT);

    it('NoAck: with ordering, the next message is not delivered until the first is acknowledged, and neither comes again', async () => {
      const name = topic();
      const published = await publishSimple(name, 2, 1, () => ({ key: 'k' }));
      let unlock!: () => void;
      const unlocked = new Promise<void>((resolve) => (unlock = resolve));
      const seen: string[] = [];
      const sub = await subscriber(name, 'cg', async (message) => {
        seen.push(message.uuid);
        if (message.num === 0) await unlocked;
      });
      await waitFor('the first message', () => seen.length === 1);
      await sleep(100);
      expect(seen).toEqual([published[0]!.uuid]);
      unlock();
      await waitFor('the second message', () => seen.length === 2);
      await sleep(50);
      report('NoAck', { published: 2, received: seen.length });
      expect(seen).toEqual(published.map((m) => m.uuid));
      await sub.close();
    }, CASE_TIMEOUT);

    it(`ContinueAfterSubscribeClose: ${count(5000, 50)} messages read by subscribers closed after each batch, none lost`, async () => {
      const name = topic();
      const total = count(5000, 50);
      const batches = count(5, 2);
      const published = await publishSimple(name, total, 20);
      const used: Subscriber[] = [];
      for (let attempt = 0; attempt < batches * 4 && tally(used).distinct.size < total; attempt++) {
        // As Watermill's bulkRead: a subscriber takes one batch; what it is handed beyond that is
        // not acknowledged (nacked), and it is closed with those messages in hand.
        let taken = 0;
        const sub = await subscriber(name, 'cg', async () => {
          if (taken >= total / batches) throw new Error('beyond this subscriber\'s batch');
          taken++;
        });
        used.push(sub);
        const target = Math.min(total, tally(used).distinct.size + total / batches);
        await waitFor('a batch', () => tally(used).distinct.size >= target, READ_TIMEOUT).catch(() => undefined);
        await sub.close();
      }
      const counts = await bulkRead(used, published, 5000);
      report('ContinueAfterSubscribeClose', { published: total, subscribers: used.length, ...counts });
      expect(counts.lost).toBe(0);
    }, CASE_TIMEOUT);

    it('ConcurrentClose: 10 subscribers started and closed at once, then 50 messages all reach a new one', async () => {
      const name = topic();
      await Promise.all([...Array(10).keys()].map(async () => (await subscriber(name)).close()));
      const published = await publishSimple(name, 50);
      const sub = await subscriber(name);
      const counts = await bulkRead([sub], published);
      report('ConcurrentClose', { published: 50, ...counts });
      expect(counts.lost).toBe(0);
    }, CASE_TIMEOUT);

    it(`ContinueAfterErrors: ${count(3, 1)} subscribers nack ${count(100, 5)} deliveries each and close; then all 50 messages arrive`, async () => {
      const name = topic();
      const published = await publishSimple(name, 50);
      for (let index = 0; index < count(3, 1); index++) {
        let nacks = 0;
        const failing = await subscriber(name, 'cg', async () => {
          nacks++;
          throw new Error('nack');
        });
        await waitFor('the nacks', () => nacks >= count(100, 5), READ_TIMEOUT);
        await failing.close();
      }
      const sub = await subscriber(name);
      const counts = await bulkRead([sub], published);
      report('ContinueAfterErrors', { published: 50, ...counts });
      expect(counts.lost).toBe(0);
    }, CASE_TIMEOUT);

    it(`PublishSubscribeInOrder: ${count(1000, 100)} messages of 16 keys keep their order per key across 10 subscribers`, async () => {
      const name = topic();
      const published = await publishSimple(name, count(1000, 100), 1, (message) => ({ key: String(message.num % 16) }));
      const order: Message[] = [];
      const subs = await Promise.all(
        [...Array(10).keys()].map(() =>
          subscriber(name, 'cg', async (message) => {
            await sleep(Math.random() * 2);
            order.push(message);
          }),
        ),
      );
      const counts = await bulkRead(subs, published);
      report('PublishSubscribeInOrder', { published: published.length, keys: 16, ...counts });
      expect(counts.lost).toBe(0);
      for (let key = 0; key < 16; key++) {
        expect(order.filter((m) => m.num % 16 === key).map((m) => m.uuid)).toEqual(published.filter((m) => m.num % 16 === key).map((m) => m.uuid));
      }
    }, CASE_TIMEOUT);

    it(`PublisherClose: ${count(10000, 100)} messages published by 20 publishers at once, then the publisher closes; none lost`, async () => {
      const name = topic();
      const published = await publishSimple(name, count(10000, 100), 20);
      await client.close();
      const sub = await subscriber(name);
      const counts = await bulkRead([sub], published);
      report('PublisherClose', { published: published.length, ...counts });
      expect(counts.lost).toBe(0);
    }, CASE_TIMEOUT);

    it('Topic: each subscriber gets only its own topic', async () => {
      const [first, second] = [topic(), topic()];
      const [one] = await publishSimple(first, 1);
      const [two] = await publishSimple(second, 1);
      const subs = [await subscriber(first), await subscriber(second)];
      await waitFor('both', () => subs.every((s) => s.received.length === 1));
      await sleep(100);
      report('Topic', { published: 2, received: subs[0]!.received.length + subs[1]!.received.length });
      expect(subs.map((s) => s.received.map((r) => r.message.uuid))).toEqual([[one!.uuid], [two!.uuid]]);
    }, CASE_TIMEOUT);

    it('ConsumerGroups: two groups each receive all 50 messages', async () => {
      const name = topic();
      // Watermill creates the groups first (a subscription, then close), so they exist before publishing.
      await Promise.all(['g1', 'g2'].map(async (group) => (await subscriber(name, group)).close()));
      const published = await publishSimple(name, 50);
      const counts = await Promise.all(['g1', 'g2'].map(async (group) => bulkRead([await subscriber(name, group)], published)));
      report('ConsumerGroups', { published: 50, g1: counts[0], g2: counts[1] });
      expect(counts.map((c) => c.lost)).toEqual([0, 0]);
    }, CASE_TIMEOUT);

    it('NewSubscriberReceivesOldMessages: each new group receives what was published before it', async () => {
      const name = topic();
      const published: Message[] = [];
      const subs: Subscriber[] = [];
      published.push(...(await publishSimple(name, 1)));
      for (let round = 0; round < 3; round++) {
        published.push(...(await publishSimple(name, 1)));
        subs.push(await subscriber(name, `new-${round}`));
        for (const sub of subs) expect((await bulkRead([sub], published)).lost).toBe(0);
      }
      report('NewSubscriberReceivesOldMessages', { published: published.length, subscribers: subs.length, received: subs.map((s) => tally([s]).distinct.size) });
    }, CASE_TIMEOUT);

    it(`Reconnect: ${count(10000, 2000)} messages from ${count(100, 20)} publishers while Redis restarts twice; all arrive`, async () => {
      const name = topic();
      const total = count(10000, 2000);
      const sub = await subscriber(name);
      const published: Message[] = [];
      const restartAt = new Set([Math.floor(total / 3), Math.floor(total / 2)]);
      let next = 0;
      let restarts = 0;
      let publishErrors = 0;
      // Restarts one after the other, as Watermill's restart command runs to completion each time.
      let restarting: Promise<void> = Promise.resolve();
      await Promise.all(
        [...Array(count(100, 20)).keys()].map(async () => {
          while (next < total) {
            const num = next++;
            if (restartAt.has(num)) {
              restarts++;
              restarting = restarting.then(async () => {
                await redis.kill();
                await sleep(300);
                await redis.restart();
              });
            }
            const message = { uuid: randomUUID(), num };
            for (;;) {
              try {
                await client.durable.publish(name, message, { idempotencyKey: message.uuid });
                break;
              } catch {
                publishErrors++;
                await sleep(100);
              }
            }
            published.push(message);
          }
        }),
      );
      await restarting;
      const counts = await bulkRead([sub], published);
      report('Reconnect', { published: published.length, restarts, publishErrors, ...counts });
      expect(counts.lost).toBe(0);
    }, 180_000);
  });
}
