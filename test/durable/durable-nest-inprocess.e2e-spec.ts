// A Nest app's durable handlers in this process: metrics through OpenTelemetry (the SDK with an
// in-memory exporter: counters, each group's backlog, handler durations), and a handler whose
// group comes from configuration rather than its decorator.
import 'reflect-metadata';
import { Controller } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { BufferClient, DurableContext, DurablePattern, RedisBufferTransport } from 'nestjs-redis-buffer';
import { installInMemoryOpenTelemetry, type InMemoryTelemetry, type MetricPoint } from '../fixtures/otel-memory.js';
import { sleep } from '../support/raw-redis.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { waitFor } from '../support/durable.js';

const DURABLE = { claimIdle: 1000, claimInterval: 100, retryDelay: 10, maxRetryDelay: 20, maxAttempts: 2, maxInFlight: 1 };
let release: () => void = () => undefined;
const configured: Array<{ group: string; data: unknown }> = [];

@Controller()
class MeteredController {
  @DurablePattern('metered', { group: 'm' })
  async handle(@Payload() job: { fail?: boolean; hold?: boolean }): Promise<void> {
    if (job.hold) await new Promise<void>((resolve) => (release = resolve));
    if (job.fail) throw new Error('fails');
  }

  @DurablePattern('configured')
  configured(@Payload() data: unknown, @Ctx() context: DurableContext): void {
    configured.push({ group: context.getGroup(), data });
  }
}

/** The sum over the points of `name` with these attributes (a histogram's point: its count), or undefined if none. */
function value(points: MetricPoint[], name: string, attributes: Record<string, unknown> = {}): number | undefined {
  const matching = points.filter((point) => point.name === name && Object.entries(attributes).every(([key, wanted]) => point.attributes[key] === wanted));
  return matching.length === 0 ? undefined : matching.reduce((sum, point) => sum + point.value, 0);
}

describe('durable metrics in OpenTelemetry', () => {
  let telemetry: InMemoryTelemetry;
  let redis: TestRedis;
  let transport: RedisBufferTransport;
  let client: BufferClient;
  let close: () => Promise<void>;

  beforeAll(async () => {
    telemetry = installInMemoryOpenTelemetry();
    redis = await startRedis();
    const moduleRef = await Test.createTestingModule({ controllers: [MeteredController] }).compile();
    const app = moduleRef.createNestApplication();
    // The group of "configured" comes from here, as from an environment variable.
    transport = new RedisBufferTransport({ redis: redis.url, namespace: 'metered', instanceId: 'm1', durable: { ...DURABLE, handlers: { configured: { group: 'from-config' } } } });
    app.connectMicroservice({ strategy: transport });
    await app.startAllMicroservices();
    await app.init();
    close = () => app.close();
    client = new BufferClient({ redis: redis.url, namespace: 'metered', durable: DURABLE });
  });

  afterAll(async () => {
    release();
    await client?.close();
    await close?.();
    await redis?.stop();
  });

  it('reports runs, retries, dead letters, handler durations, and the group lag, pending count and oldest pending age', async () => {
    await client.durable.publish('metered', { fail: true });
    await client.durable.publish('metered', {});
    await waitFor('two entries done', () => transport.durableConsumer!.stats.handled + transport.durableConsumer!.stats.deadLettered === 2);
    // One entry held by the handler (maxInFlight 1), three behind it not delivered yet.
    await client.durable.publish('metered', { hold: true });
    for (let n = 0; n < 3; n++) await client.durable.publish('metered', {});
    await waitFor('the held entry running', () => transport.durableConsumer!.stats.runs === 4);
    await sleep(50);
    await transport.durableConsumer!.sampleBacklog();
    const points = await telemetry.metrics();
    const group = { 'messaging.destination.name': 'metered', 'messaging.consumer.group.name': 'm' };
    expect({
      runs: value(points, 'nestjs_redis_buffer.durable.runs'),
      handled: value(points, 'nestjs_redis_buffer.durable.handled'),
      retries: value(points, 'nestjs_redis_buffer.durable.retries', group),
      deadLetters: value(points, 'nestjs_redis_buffer.durable.dead_letters', group),
      lag: value(points, 'nestjs_redis_buffer.durable.lag', group),
      pending: value(points, 'nestjs_redis_buffer.durable.pending', group),
      // Two failed runs and one success ended; the held one is still running.
      processed: value(points, 'messaging.process.duration', { 'nestjs_redis_buffer.kind': 'durable', 'messaging.destination.name': 'metered', 'messaging.consumer.group.name': 'm' }),
    }).toEqual({ runs: 4, handled: 1, retries: 1, deadLetters: 1, lag: 3, pending: 1, processed: 3 });
    const age = value(points, 'nestjs_redis_buffer.durable.oldest_pending.age', group)!;
    expect(age).toBeGreaterThan(0.04);
    expect(age).toBeLessThan(5);
    release();
  }, 30_000);

  it('takes a handler\'s group from configuration when its decorator names none', async () => {
    await client.durable.publish('configured', { n: 1 });
    await waitFor('the configured handler ran', () => configured.length === 1);
    expect(configured).toEqual([{ group: 'from-config', data: { n: 1 } }]);
  }, 30_000);
});
