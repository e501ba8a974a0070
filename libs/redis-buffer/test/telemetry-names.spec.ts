import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { DURABLE_METRIC, prometheusViews } from '../src/core/telemetry/metric-names.js';
import { OutcomeTally } from '../src/core/telemetry/outcome-tally.js';
import { redisServerAddress } from '../src/core/telemetry/server-address.js';
import { BufferTelemetry, errorTypeOf } from '../src/core/telemetry/telemetry.js';
import { durableMetrics } from '../src/core/durable/durable-metrics.js';
import type { DurableConsumer } from '../src/core/durable/durable-consumer.js';

describe('telemetry names and attributes', () => {
  it('server.address and server.port come from the redis URL or ioredis options, and are left out for a Cluster or Sentinel', () => {
    expect(redisServerAddress({ redis: 'redis://cache.internal:6380/2' })).toEqual({ address: 'cache.internal', port: 6380 });
    expect(redisServerAddress({ redis: 'rediss://user:secret@cache.internal' })).toEqual({ address: 'cache.internal', port: 6379 });
    expect(redisServerAddress({ redis: 'redis://[::1]:7000' })).toEqual({ address: '::1', port: 7000 });
    expect(redisServerAddress({ redis: { host: '10.0.0.5', port: 7001 } })).toEqual({ address: '10.0.0.5', port: 7001 });
    expect(redisServerAddress({ redis: {} })).toEqual({ address: 'localhost', port: 6379 });
    expect(redisServerAddress({ redis: { path: '/run/redis.sock' } })).toEqual({ address: '/run/redis.sock' });
    expect(redisServerAddress({ redis: { sentinels: [{ host: 's1', port: 26379 }], name: 'mymaster' } })).toEqual({});
    expect(redisServerAddress({ redis: 'redis://127.0.0.1:6379', cluster: { nodes: [] } })).toEqual({});
  });

  it('error.type is the error\'s code, else its class name, else "error"', () => {
    expect(errorTypeOf({ code: 'BUFFER_TIMEOUT', name: 'BufferTimeoutError' })).toBe('BUFFER_TIMEOUT');
    expect(errorTypeOf(new TypeError('x'))).toBe('TypeError');
    expect(errorTypeOf(new Error('x'))).toBe('error');
    expect(errorTypeOf({ message: 'a handler\'s plain error payload' })).toBe('error');
    expect(errorTypeOf('BUFFER_NO_HANDLER')).toBe('BUFFER_NO_HANDLER');
    expect(errorTypeOf(null)).toBe('error');
  });

  it('an outcome tally reports every known combination from zero, and counts codes beyond its limit as _OTHER', () => {
    const tally = new OutcomeTally([{ 'error.type': 'BUFFER_OVERLOADED' }, { 'error.type': 'BUFFER_NO_HANDLER' }]);
    tally.add({ 'error.type': 'BUFFER_NO_HANDLER' });
    const seen = (): Array<[number, unknown]> => {
      const all: Array<[number, unknown]> = [];
      tally.forEach((count, attributes) => all.push([count, attributes['error.type']]));
      return all;
    };
    expect(seen()).toEqual([[0, 'BUFFER_OVERLOADED'], [1, 'BUFFER_NO_HANDLER']]);
    for (let i = 0; i < 200; i++) tally.add({ 'error.type': `E_${i}` });
    tally.add({ 'error.type': 'BUFFER_NO_HANDLER' });
    const counts = seen();
    expect(counts).toHaveLength(100 + 1);
    expect(counts).toContainEqual([2, 'BUFFER_NO_HANDLER']);
    expect(counts).toContainEqual([102, '_OTHER']);
  });

  it('prometheusViews renames the duration histograms to *_seconds and keeps their buckets', async () => {
    const reader = new PeriodicExportingMetricReader({ exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE), exportIntervalMillis: 3_600_000 });
    const provider = new MeterProvider({ readers: [reader], views: prometheusViews() });
    const meter = provider.getMeter('test');
    meter.createHistogram('messaging.client.operation.duration', { unit: 's', advice: { explicitBucketBoundaries: [0.0005, 0.001] } }).record(0.0007);
    meter.createHistogram('messaging.process.duration', { unit: 's' }).record(0.2);
    const { resourceMetrics } = await reader.collect();
    const collected = resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics);
    expect(collected.map((metric) => metric.descriptor.name).sort()).toEqual(['messaging.client.operation.duration_seconds', 'messaging.process.duration_seconds']);
    const client = collected.find((metric) => metric.descriptor.name === 'messaging.client.operation.duration_seconds')!;
    expect((client.dataPoints[0]!.value as { buckets: { boundaries: number[] } }).buckets.boundaries).toEqual([0.0005, 0.001]);
    await provider.shutdown();
  });
});

describe('durable group metrics', () => {
  it('are reported per pattern and consumer group under the names the dashboard reads, with namespace and instance id', async () => {
    const api = await import('@opentelemetry/api');
    const reader = new PeriodicExportingMetricReader({ exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE), exportIntervalMillis: 3_600_000 });
    const provider = new MeterProvider({ readers: [reader] });
    api.metrics.setGlobalMeterProvider(provider);
    try {
      const telemetry = new BufferTelemetry('server', 'shop', 'api-1');
      // What a consumer reports, as its backlog sampler and entry runner leave it.
      const group = { pattern: 'order.placed', group: 'billing', retried: 2, deadLettered: 1 };
      // A group bound to a wildcard: its stream holds entries of every topic the binding matched.
      const wildcard = { pattern: 'order.*', group: 'audit', retried: 0, deadLettered: 0 };
      const consumer = {
        stats: { received: 0, runs: 0, handled: 0, failed: 0, retried: 2, deadLettered: 1, claimed: 0, lateAcksRefused: 0, duplicatesRun: 0, filtered: 7 },
        backlog: [
          { pattern: 'order.placed', stream: 'shop:durable:{order.placed}', group: 'billing', lag: 12, pending: 3, oldestPendingAgeMs: 4500, sampledAt: 0 },
          { pattern: 'order.*', stream: 'shop:durable:{order.*}', group: 'audit', lag: 0, pending: 0, oldestPendingAgeMs: 0, sampledAt: 0 },
        ],
        groups: [group, wildcard],
      } as unknown as DurableConsumer;
      // Registered before the API is attached, as a transport does when listen() finds durable handlers first.
      telemetry.observe(durableMetrics(consumer));
      telemetry.attach(api, {}, {});
      await reader.collect();
      const { resourceMetrics } = await reader.collect();
      const points = new Map(resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics).map((metric) => [metric.descriptor.name, { unit: metric.descriptor.unit, point: metric.dataPoints[0]! }]));
      expect(Object.fromEntries([...points].filter(([name]) => (Object.values(DURABLE_METRIC) as string[]).includes(name)).map(([name, { unit, point }]) => [name, [unit, point.value]]))).toEqual({
        [DURABLE_METRIC.lag]: ['{message}', 12],
        [DURABLE_METRIC.pending]: ['{message}', 3],
        [DURABLE_METRIC.oldestPendingAge]: ['s', 4.5],
        [DURABLE_METRIC.retries]: ['{message}', 2],
        [DURABLE_METRIC.deadLetters]: ['{message}', 1],
      });
      // Entries a handler's header filter left out, acknowledged unrun.
      expect(points.get('nestjs_redis_buffer.durable.filtered')).toMatchObject({ unit: '{message}', point: { value: 7 } });
      const common = { 'messaging.system': 'redis', 'nestjs_redis_buffer.namespace': 'shop', 'nestjs_redis_buffer.instance.id': 'api-1' };
      // The destination is what publishers name: an exact group's pattern; a wildcard group has its
      // binding as the subscription only, on every group series alike.
      for (const name of Object.values(DURABLE_METRIC)) {
        const metric = resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics).find((one) => one.descriptor.name === name)!;
        expect({ name, attributes: metric.dataPoints.map((point) => point.attributes) }).toEqual({
          name,
          attributes: [
            { ...common, 'messaging.destination.name': 'order.placed', 'messaging.destination.subscription.name': 'order.placed', 'messaging.consumer.group.name': 'billing' },
            { ...common, 'messaging.destination.subscription.name': 'order.*', 'messaging.consumer.group.name': 'audit' },
          ],
        });
      }
    } finally {
      await provider.shutdown();
    }
  });
});
