// Durable topics through Nest: @DurablePattern with a wildcard pattern and a header filter, the
// context a handler gets (the topic, its binding), and a malformed pattern refused when the class
// is defined.
import 'reflect-metadata';
import { Controller } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { BufferClient, DurableContext, DurablePattern, RedisBufferTransport, TopicPatternError } from 'nestjs-redis-buffer';
import { sleep } from '../support/raw-redis.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { waitFor } from '../support/durable.js';

const DURABLE = { claimIdle: 1000, claimInterval: 100, retryDelay: 10, maxRetryDelay: 20 };
const runs: Array<{ group: string; topic: string; binding: string; region: string | undefined; data: unknown }> = [];

function seen(group: string, data: unknown, ctx: DurableContext): void {
  runs.push({ group, topic: ctx.getPattern(), binding: ctx.getBinding(), region: ctx.getHeader('region'), data });
}

@Controller()
class OrdersController {
  @DurablePattern('order.*', { group: 'eu-billing', headers: { region: 'eu' } })
  billEu(@Payload() data: unknown, @Ctx() ctx: DurableContext): void {
    seen('eu-billing', data, ctx);
  }

  @DurablePattern('order.>', { group: 'audit' })
  audit(@Payload() data: unknown, @Ctx() ctx: DurableContext): void {
    seen('audit', data, ctx);
  }

  @DurablePattern('order.created', { group: 'exact' })
  exact(@Payload() data: unknown, @Ctx() ctx: DurableContext): void {
    seen('exact', data, ctx);
  }
}

describe('durable topics (Nest)', () => {
  let redis: TestRedis;
  let transport: RedisBufferTransport;
  let client: BufferClient;
  let close: () => Promise<void>;

  beforeAll(async () => {
    redis = await startRedis();
    const moduleRef = await Test.createTestingModule({ controllers: [OrdersController] }).compile();
    const app = moduleRef.createNestApplication();
    transport = new RedisBufferTransport({ redis: redis.url, namespace: 'topics', instanceId: 'n1', durable: DURABLE });
    app.connectMicroservice({ strategy: transport });
    await app.startAllMicroservices();
    await app.init();
    close = () => app.close();
    client = new BufferClient({ redis: redis.url, namespace: 'topics', durable: DURABLE });
  });

  afterAll(async () => {
    await client?.close();
    await close?.();
    await redis?.stop();
  });

  it('routes by topic and by header, and tells the handler the topic and its binding', async () => {
    await client.durable.publish('order.created', 1, { headers: { region: 'eu' } });
    await client.durable.publish('order.shipped', 2, { headers: { region: 'us' } });
    await client.durable.publish('order.item.added', 3, { headers: { region: 'eu' } });
    await client.durable.publish('order.cancelled', 4);
    await waitFor('6 runs', () => runs.length >= 6);
    await waitFor('the filtered entries acknowledged', () => transport.durableConsumer!.stats.filtered === 2);
    await sleep(200);
    const of = (group: string): unknown[] => runs.filter((run) => run.group === group).map(({ topic, binding, region, data }) => ({ topic, binding, region, data }));
    expect(of('eu-billing')).toEqual([{ topic: 'order.created', binding: 'order.*', region: 'eu', data: 1 }]);
    expect(of('exact')).toEqual([{ topic: 'order.created', binding: 'order.created', region: 'eu', data: 1 }]);
    expect(new Set(of('audit'))).toEqual(
      new Set([
        { topic: 'order.created', binding: 'order.>', region: 'eu', data: 1 },
        { topic: 'order.shipped', binding: 'order.>', region: 'us', data: 2 },
        { topic: 'order.item.added', binding: 'order.>', region: 'eu', data: 3 },
        { topic: 'order.cancelled', binding: 'order.>', region: undefined, data: 4 },
      ]),
    );
    expect(of('audit')).toHaveLength(4);
    expect(runs).toHaveLength(6);
    expect(await client.durable.bindings()).toEqual(['order.*', 'order.>']);
  }, 30_000);

  it('refuses a malformed wildcard pattern when the class is defined', () => {
    const define = (pattern: string) => () => {
      class Bad {
        handle(): void {}
      }
      DurablePattern(pattern, { group: 'g' })(Bad.prototype, 'handle', Object.getOwnPropertyDescriptor(Bad.prototype, 'handle')!);
    };
    for (const pattern of ['order.>.x', 'order..*', '*.']) {
      expect(define(pattern)).toThrow(TopicPatternError);
    }
    expect(define('order.*')).not.toThrow();
  });
});
