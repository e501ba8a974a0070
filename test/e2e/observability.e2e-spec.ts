// Traces, metrics and health, with the OpenTelemetry SDK and in-memory exporters in this process and
// in three instance processes: one gather is one trace whose spans link the caller and every handler.
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { BufferClient, BufferHealthIndicator, RedisBufferTransport } from 'nestjs-redis-buffer';
import { installInMemoryOpenTelemetry, type InMemoryTelemetry, type MetricPoint, type SpanRecord } from '../fixtures/otel-memory.js';
import { startInstances, stopAll, type InstanceProcess } from '../support/instances.js';
import { FAULT_APP } from '../support/load.js';
import { sleep } from '../support/raw-redis.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { quietLogs, reportFault } from '../support/captured-logs.js';

// The health test kills Redis: the reconnect warnings it provokes are captured, not printed.
quietLogs([/^Redis: /, /^Redis connection lost/]);

const namespace = 'otel';

function points(all: MetricPoint[], name: string, attributes: Record<string, unknown> = {}): MetricPoint[] {
  return all.filter((point) => point.name === name && Object.entries(attributes).every(([key, value]) => point.attributes[key] === value));
}

function total(all: MetricPoint[], name: string, attributes: Record<string, unknown> = {}): number {
  return points(all, name, attributes).reduce((sum, point) => sum + point.value, 0);
}

describe('observability: traces, metrics and health', () => {
  let telemetry: InMemoryTelemetry;
  let redis: TestRedis;
  let instances: InstanceProcess[];
  let client: BufferClient;

  beforeAll(async () => {
    // Registered before any client exists, as an app's tracing setup runs first.
    telemetry = installInMemoryOpenTelemetry();
    redis = await startRedis();
    instances = await startInstances(
      ['t1', 't2', 't3'].map((instanceId) => ({ instanceId, redisUrl: redis.url, namespace, script: FAULT_APP, env: { OTEL_IN_MEMORY: '1' } })),
    );
    client = new BufferClient({ redis: redis.url, namespace, instanceId: 'otel-caller', timeout: 3000 });
    await client.connect();
    await client.instances();
  }, 60_000);

  afterAll(async () => {
    await client?.close();
    await stopAll(instances ?? []);
    await redis?.stop();
  });

  it('a gather across three processes is one trace: the caller span and a child span per instance handler, with messaging attributes', async () => {
    const result = await client.gather<string>('whoami', null);
    expect(result).toMatchObject({ completedBy: 'all', expected: 3, finished: 3 });
    const producer = telemetry.spans().find((span) => span.name === 'send whoami');
    expect(producer).toBeDefined();
    const server = new URL(redis.url);
    expect(producer).toMatchObject({
      kind: SpanKind.PRODUCER,
      statusCode: SpanStatusCode.UNSET,
      attributes: expect.objectContaining({
        'messaging.system': 'redis',
        'messaging.operation.type': 'send',
        'messaging.operation.name': 'send',
        'messaging.destination.name': 'whoami',
        'messaging.client.id': 'otel-caller',
        'server.address': server.hostname,
        'server.port': Number(server.port),
        'nestjs_redis_buffer.kind': 'request',
        'nestjs_redis_buffer.channel': `${namespace}:req:whoami`,
        'nestjs_redis_buffer.expected': 3,
        'nestjs_redis_buffer.finished': 3,
        'nestjs_redis_buffer.completed_by': 'all',
        'nestjs_redis_buffer.missing': [],
      }),
    });
    const perInstance = await client.gather<SpanRecord[]>('otel.spans', null);
    const handlers = perInstance.replies.flatMap((reply) => reply.data.filter((span) => span.traceId === producer!.traceId).map((span) => ({ ...span, on: reply.instanceId })));
    expect(handlers.map((span) => span.on).sort()).toEqual(['t1', 't2', 't3']);
    for (const span of handlers) {
      expect(span).toMatchObject({
        name: 'process whoami',
        kind: SpanKind.CONSUMER,
        parentSpanId: producer!.spanId,
        attributes: expect.objectContaining({
          'messaging.system': 'redis',
          'messaging.operation.type': 'process',
          'messaging.operation.name': 'process',
          'messaging.destination.name': 'whoami',
          'messaging.client.id': span.on,
          'nestjs_redis_buffer.kind': 'request',
          'nestjs_redis_buffer.channel': `${namespace}:req:whoami`,
          'messaging.message.id': producer!.attributes['messaging.message.id'],
          'nestjs_redis_buffer.instance.id': span.on,
          'nestjs_redis_buffer.sender.id': 'otel-caller',
        }),
      });
    }
  });

  it('an event is one trace too: send {pattern} on the caller, process {pattern} on every instance, destination the pattern', async () => {
    const receivers = await lastValue(client.emit('dual', 'traced'));
    expect(receivers).toBe(3);
    const producer = telemetry.spans().find((span) => span.name === 'send dual');
    expect(producer).toMatchObject({
      kind: SpanKind.PRODUCER,
      statusCode: SpanStatusCode.UNSET,
      attributes: expect.objectContaining({ 'messaging.operation.name': 'send', 'messaging.destination.name': 'dual', 'nestjs_redis_buffer.kind': 'event', 'nestjs_redis_buffer.channel': `${namespace}:evt:dual`, 'nestjs_redis_buffer.receivers': 3 }),
    });
    let handlers: Array<SpanRecord & { on: string }> = [];
    for (const deadline = Date.now() + 5000; handlers.length < 3 && Date.now() < deadline; await sleep(50)) {
      const perInstance = await client.gather<SpanRecord[]>('otel.spans', null);
      handlers = perInstance.replies.flatMap((reply) => reply.data.filter((span) => span.traceId === producer!.traceId).map((span) => ({ ...span, on: reply.instanceId })));
    }
    expect(handlers.map((span) => span.on).sort()).toEqual(['t1', 't2', 't3']);
    for (const span of handlers) {
      expect(span).toMatchObject({ name: 'process dual', kind: SpanKind.CONSUMER, parentSpanId: producer!.spanId, attributes: expect.objectContaining({ 'messaging.operation.name': 'process', 'messaging.destination.name': 'dual', 'nestjs_redis_buffer.kind': 'event' }) });
    }
  });

  it('a durable entry carries the trace too: the publisher span is the parent of each group\'s handler span', async () => {
    const entryId = await client.durable.publish('otel.durable', { n: 1 });
    const publisher = telemetry.spans().find((span) => span.name === 'send otel.durable' && span.attributes['messaging.message.id'] === entryId);
    expect(publisher).toMatchObject({
      kind: SpanKind.PRODUCER,
      attributes: expect.objectContaining({ 'messaging.operation.name': 'send', 'messaging.destination.name': 'otel.durable', 'nestjs_redis_buffer.kind': 'durable' }),
    });
    expect(publisher!.attributes['messaging.consumer.group.name']).toBeUndefined();
    let handlers: Array<SpanRecord & { on: string }> = [];
    for (const deadline = Date.now() + 10_000; handlers.length < 3 && Date.now() < deadline; await sleep(100)) {
      const perInstance = await client.gather<SpanRecord[]>('otel.spans', null);
      handlers = perInstance.replies.flatMap((reply) => reply.data.filter((span) => span.traceId === publisher!.traceId && span.name === 'process otel.durable').map((span) => ({ ...span, on: reply.instanceId })));
    }
    expect(handlers.map((span) => span.on).sort()).toEqual(['t1', 't2', 't3']);
    for (const span of handlers) {
      expect(span).toMatchObject({
        kind: SpanKind.CONSUMER,
        parentSpanId: publisher!.spanId,
        attributes: expect.objectContaining({
          'messaging.message.id': entryId,
          'messaging.operation.name': 'process',
          // The same destination as the publisher's; the group in its own attribute.
          'messaging.destination.name': 'otel.durable',
          'messaging.consumer.group.name': `otel-${span.on}`,
          'nestjs_redis_buffer.kind': 'durable',
        }),
      });
    }
  }, 30_000);

  it('a topic gather, event and durable entry keep the topic in messaging.destination.name on both sides, with the wildcard binding in messaging.destination.subscription.name', async () => {
    const gathered = await client.gather<string>('otel.topic.a', null);
    expect(gathered).toMatchObject({ completedBy: 'all', expected: 3, missing: [] });
    expect(gathered.replies.map((reply) => reply.data)).toEqual(['otel.topic.a', 'otel.topic.a', 'otel.topic.a']);
    expect(await lastValue(client.emit('otel.feed.x.y', null))).toBe(3);
    const entryId = await client.durable.publish('otel.jobs.b', { n: 1 });
    const send = (name: string): SpanRecord => telemetry.spans().find((span) => span.name === name)!;
    const producers = { request: send('send otel.topic.a'), event: send('send otel.feed.x.y'), durable: send('send otel.jobs.b') };
    for (const [kind, span] of Object.entries(producers)) {
      expect(span).toMatchObject({ kind: SpanKind.PRODUCER, attributes: expect.objectContaining({ 'messaging.destination.name': span.name.slice('send '.length), 'nestjs_redis_buffer.kind': kind }) });
      // The caller named a topic; which bindings took it is the instances' side.
      expect(span.attributes['messaging.destination.subscription.name']).toBeUndefined();
    }
    const expected = [
      { producer: producers.request, name: 'process otel.topic.a', destination: 'otel.topic.a', binding: 'otel.topic.*' },
      { producer: producers.event, name: 'process otel.feed.x.y', destination: 'otel.feed.x.y', binding: 'otel.feed.>' },
      { producer: producers.durable, name: 'process otel.jobs.b', destination: 'otel.jobs.b', binding: 'otel.jobs.*' },
    ];
    let handlers: Array<SpanRecord & { on: string }> = [];
    for (const deadline = Date.now() + 10_000; handlers.length < 9 && Date.now() < deadline; await sleep(100)) {
      const perInstance = await client.gather<SpanRecord[]>('otel.spans', null);
      handlers = perInstance.replies.flatMap((reply) => reply.data.filter((span) => expected.some((one) => one.producer.traceId === span.traceId)).map((span) => ({ ...span, on: reply.instanceId })));
    }
    expect(handlers).toHaveLength(9);
    for (const { producer, name, destination, binding } of expected) {
      const runs = handlers.filter((span) => span.traceId === producer.traceId);
      expect(runs.map((span) => span.on).sort()).toEqual(['t1', 't2', 't3']);
      for (const span of runs) {
        expect(span).toMatchObject({ name, kind: SpanKind.CONSUMER, parentSpanId: producer.spanId, attributes: expect.objectContaining({ 'messaging.destination.name': destination, 'messaging.destination.subscription.name': binding }) });
      }
    }
    // The entry's id in its binding's stream (each stream numbers its own entries; publish() returns the topic stream's).
    expect(entryId).toMatch(/^\d+-\d+$/);
    expect(handlers.find((span) => span.name === 'process otel.jobs.b')!.attributes).toMatchObject({ 'messaging.message.id': expect.stringMatching(/^\d+-\d+$/), 'messaging.consumer.group.name': expect.stringMatching(/^otel-jobs-t\d$/) });
    const onT1 = (await client.gather<MetricPoint[]>('otel.metrics', null, { to: 't1' })).replies[0]!.data;
    // The process duration by topic and by binding; never a wildcard as a destination.
    expect(total(onT1, 'messaging.process.duration', { 'messaging.destination.name': 'otel.topic.a', 'messaging.destination.subscription.name': 'otel.topic.*', 'messaging.operation.type': 'process' })).toBe(1);
    expect(total(onT1, 'messaging.process.duration', { 'messaging.destination.name': 'otel.jobs.b', 'messaging.destination.subscription.name': 'otel.jobs.*', 'messaging.consumer.group.name': 'otel-jobs-t1' })).toBe(1);
    expect(onT1.filter((point) => /[*>]/.test(String(point.attributes['messaging.destination.name'] ?? '')))).toEqual([]);
    // A wildcard group's series: its binding and group, no destination (its stream holds many topics).
    let lag: MetricPoint[] = [];
    // The backlog is sampled every claimInterval: wait for the first sample.
    for (const deadline = Date.now() + 15_000; lag.length === 0 && Date.now() < deadline; await sleep(250)) {
      const now = (await client.gather<MetricPoint[]>('otel.metrics', null, { to: 't1' })).replies[0]!.data;
      lag = points(now, 'nestjs_redis_buffer.durable.lag', { 'messaging.destination.subscription.name': 'otel.jobs.*' });
    }
    expect(lag).toEqual([expect.objectContaining({ attributes: expect.objectContaining({ 'messaging.consumer.group.name': 'otel-jobs-t1' }) })]);
    expect(lag[0]!.attributes['messaging.destination.name']).toBeUndefined();
    expect(points(onT1, 'nestjs_redis_buffer.durable.dead_letters', { 'messaging.destination.subscription.name': 'otel.durable', 'messaging.destination.name': 'otel.durable', 'messaging.consumer.group.name': 'otel-t1' })).toEqual([expect.objectContaining({ value: 0 })]);
  }, 30_000);

  it('a refusal is an error on both sides: the instance\'s span and the caller\'s, in the same trace, and in the process duration', async () => {
    const refused = await client.gather('fail.never.registered', null, { to: 't1' });
    expect(refused.errors).toEqual([expect.objectContaining({ refused: true, error: expect.objectContaining({ code: 'BUFFER_NO_HANDLER' }) })]);
    const caller = telemetry.spans().find((span) => span.name === 'send fail.never.registered');
    expect(caller).toMatchObject({ statusCode: SpanStatusCode.ERROR, attributes: expect.objectContaining({ 'error.type': 'BUFFER_NO_HANDLER', 'nestjs_redis_buffer.errors': 1 }) });
    const onT1 = (await client.gather<SpanRecord[]>('otel.spans', null, { to: 't1' })).replies[0]!.data;
    const refusal = onT1.find((span) => span.traceId === caller!.traceId);
    expect(refusal).toMatchObject({
      name: 'process fail.never.registered',
      kind: SpanKind.CONSUMER,
      parentSpanId: caller!.spanId,
      statusCode: SpanStatusCode.ERROR,
      attributes: expect.objectContaining({ 'error.type': 'BUFFER_NO_HANDLER', 'messaging.destination.name': 'fail.never.registered' }),
    });
    const metricsOnT1 = (await client.gather<MetricPoint[]>('otel.metrics', null, { to: 't1' })).replies[0]!.data;
    expect(total(metricsOnT1, 'nestjs_redis_buffer.refusals', { 'error.type': 'BUFFER_NO_HANDLER' })).toBe(1);
    expect(total(metricsOnT1, 'messaging.process.duration', { 'messaging.destination.name': 'fail.never.registered', 'error.type': 'BUFFER_NO_HANDLER' })).toBe(1);
  });

  it('a gather where every reply is an error ends its span as an error, with the first error\'s code', async () => {
    const result = await client.gather('big.fail', 10);
    expect(result).toMatchObject({ completedBy: 'all', finished: 3, replies: [] });
    const span = telemetry.spans().find((record) => record.name === 'send big.fail');
    expect(span).toMatchObject({ statusCode: SpanStatusCode.ERROR, attributes: expect.objectContaining({ 'error.type': 'E_BIG', 'nestjs_redis_buffer.errors': 3 }) });
    const caller = await telemetry.metrics();
    expect(total(caller, 'messaging.client.operation.duration', { 'messaging.destination.name': 'big.fail', 'error.type': 'E_BIG' })).toBe(1);
    expect(total(caller, 'nestjs_redis_buffer.requests.completed', { 'nestjs_redis_buffer.completed_by': 'all', 'error.type': 'E_BIG' })).toBe(1);
  });

  it('a send() whose reply is an error ends as that error: its span, its duration and its outcome (not cancelled)', async () => {
    const before = await telemetry.metrics();
    const durations = (all: MetricPoint[]): number => total(all, 'messaging.client.operation.duration', { 'messaging.destination.name': 'big.fail', 'error.type': 'E_BIG' });
    const error = await lastValue(client.send('big.fail', 5, { to: 't2' })).catch((thrown: unknown) => thrown);
    expect(error).toMatchObject({ code: 'E_BIG' });
    const spans = telemetry.spans().filter((record) => record.name === 'send big.fail' && record.attributes['nestjs_redis_buffer.cancelled'] === undefined && record.attributes['nestjs_redis_buffer.completed_by'] === 'failed');
    expect(spans).toEqual([expect.objectContaining({ statusCode: SpanStatusCode.ERROR, attributes: expect.objectContaining({ 'error.type': 'E_BIG' }) })]);
    expect(telemetry.spans().filter((record) => record.name === 'send big.fail' && record.attributes['nestjs_redis_buffer.cancelled'] === true)).toEqual([]);
    expect(durations(await telemetry.metrics()) - durations(before)).toBe(1);
  });

  it('a timed-out gather marks the caller span', async () => {
    const timedOut = await client.gather('slow', 600, { timeout: 300 });
    expect(timedOut.completedBy).toBe('timeout');
    const slow = telemetry.spans().find((span) => span.name === 'send slow');
    expect(slow).toMatchObject({ statusCode: SpanStatusCode.ERROR, attributes: expect.objectContaining({ 'error.type': 'BUFFER_TIMEOUT', 'nestjs_redis_buffer.completed_by': 'timeout' }) });
    expect(slow!.attributes['nestjs_redis_buffer.missing']).toEqual(expect.arrayContaining(['t1', 't2', 't3']));
    // The slow handlers still run (a Promise cannot be stopped): let them end before counting what runs.
    await sleep(500);
  });

  it('metrics after a known workload have the expected counts, on the caller and on every instance', async () => {
    const counter = new BufferClient({ redis: redis.url, namespace, instanceId: 'otel-counter', timeout: 3000 });
    try {
      await counter.connect();
      // Every error series is there at zero before the first error, so rate() and increase() see the first one.
      await sleep(100);
      const before = await telemetry.metrics();
      for (const [completedBy, errorType] of [['timeout', 'BUFFER_TIMEOUT'], ['all', 'BUFFER_INSTANCES_MISSING'], ['failed', 'BUFFER_CONNECTION_LOST'], ['all', 'BUFFER_NO_HANDLER'], ['all', 'BUFFER_OVERLOADED']]) {
        const series = points(before, 'nestjs_redis_buffer.requests.completed', { 'nestjs_redis_buffer.instance.id': 'otel-counter', 'nestjs_redis_buffer.completed_by': completedBy, 'error.type': errorType });
        expect(series).toEqual([expect.objectContaining({ value: 0 })]);
      }
      for (const reason of ['silent', 'unreachable', 'left']) {
        expect(points(before, 'nestjs_redis_buffer.instances.gone', { 'nestjs_redis_buffer.instance.id': 'otel-counter', 'nestjs_redis_buffer.reason': reason })).toEqual([expect.objectContaining({ value: 0 })]);
      }
      for (let i = 0; i < 10; i++) await counter.gather('echo', i);
      await lastValue(counter.emit('dual', 'x'));
      const mine = { 'nestjs_redis_buffer.instance.id': 'otel-counter' };
      const caller = await telemetry.metrics();
      // The histograms carry the namespace and instance id too, as every series does, and the
      // conventions' attributes of an operation duration: operation name and type, the server.
      const server = new URL(redis.url);
      const durations = { ...mine, 'nestjs_redis_buffer.namespace': namespace, 'messaging.destination.name': 'echo', 'nestjs_redis_buffer.completed_by': 'all' };
      expect(total(caller, 'messaging.client.operation.duration', durations)).toBe(10);
      expect(total(caller, 'messaging.client.operation.duration', { ...durations, 'messaging.system': 'redis', 'messaging.operation.name': 'send', 'messaging.operation.type': 'send', 'server.address': server.hostname, 'server.port': Number(server.port) })).toBe(10);
      expect(total(caller, 'nestjs_redis_buffer.requests.completed', { ...mine, 'nestjs_redis_buffer.completed_by': 'all' })).toBe(10);
      expect(total(caller, 'nestjs_redis_buffer.connection.up', mine)).toBe(1);
      expect(total(caller, 'nestjs_redis_buffer.request.expected', { 'messaging.destination.name': 'echo' })).toBe(10);
      expect(total(caller, 'messaging.client.sent.messages', mine)).toBe(11);
      expect(total(caller, 'messaging.client.consumed.messages', mine)).toBe(30);
      expect(total(caller, 'nestjs_redis_buffer.requests.in_flight', mine)).toBe(0);
      expect(total(caller, 'nestjs_redis_buffer.instances.live', mine)).toBe(3);
      // An event's handler runs apart from later requests (nothing orders the two): wait until every
      // instance has run it before reading what they recorded.
      for (let waited = 0; waited < 3000; waited += 20) {
        const seen = await counter.gather<unknown[]>('dual.seen', null);
        if (seen.replies.length === 3 && seen.replies.every((reply) => reply.data.includes('x'))) break;
        await sleep(20);
      }
      const perInstance = await counter.gather<MetricPoint[]>('otel.metrics', null);
      expect(perInstance.replies).toHaveLength(3);
      for (const reply of perInstance.replies) {
        const theirs = { 'nestjs_redis_buffer.instance.id': reply.instanceId, 'nestjs_redis_buffer.namespace': namespace, 'messaging.operation.name': 'process' };
        expect(total(reply.data, 'messaging.process.duration', { ...theirs, 'messaging.destination.name': 'echo', 'messaging.destination.subscription.name': 'echo', 'messaging.operation.type': 'process', 'server.port': Number(new URL(redis.url).port), 'nestjs_redis_buffer.kind': 'request' })).toBe(10);
        // This test's event and the earlier tracing test's.
        expect(total(reply.data, 'messaging.process.duration', { ...theirs, 'messaging.destination.name': 'dual', 'nestjs_redis_buffer.kind': 'event' })).toBe(2);
        for (const code of ['BUFFER_EXPIRED', 'BUFFER_NO_HANDLER', 'BUFFER_OVERLOADED', 'BUFFER_SHUTTING_DOWN', 'BUFFER_BAD_REQUEST', 'BUFFER_UNSUPPORTED_VERSION']) {
          expect(points(reply.data, 'nestjs_redis_buffer.refusals', { 'error.type': code })).toHaveLength(1);
        }
        // Every drop and loss counter is reported from 0, before the first one happens.
        for (const name of ['nestjs_redis_buffer.messages.forged', 'nestjs_redis_buffer.messages.replayed', 'nestjs_redis_buffer.replies.resent', 'nestjs_redis_buffer.replies.publish_failures', 'nestjs_redis_buffer.deliveries.repeated', 'nestjs_redis_buffer.durable.late_acks_refused', 'nestjs_redis_buffer.durable.forged']) {
          expect({ name, points: points(reply.data, name, { 'nestjs_redis_buffer.instance.id': reply.instanceId }) }).toEqual({ name, points: [expect.objectContaining({ value: 0 })] });
        }
        expect(total(reply.data, 'nestjs_redis_buffer.handlers.in_flight')).toBe(1); // the otel.metrics handler itself
      }
    } finally {
      await counter.close();
    }
  });

  it('the health indicator is up with Redis, down within seconds when it is killed, and up again when it returns', async () => {
    if (!redis.owned) return;
    const transport = new RedisBufferTransport({ redis: redis.url, namespace, instanceId: 'otel-health' });
    await new Promise<void>((resolve, reject) => void transport.listen((error) => (error ? reject(error) : resolve())));
    const health = new BufferHealthIndicator(client).watch(transport);
    try {
      const up = await health.isHealthy('buffer');
      expect(up.buffer).toMatchObject({ status: 'up', client: 'connected', transport: 'connected', subscriptionsConfirmed: true });
      expect(up.buffer.instances.map((i) => i.instanceId).sort()).toEqual(expect.arrayContaining(['t1', 't2', 't3']));
      const healthIs = async (status: 'up' | 'down', timeoutMs: number) => {
        let result = await health.isHealthy('buffer');
        for (const deadline = Date.now() + timeoutMs; result.buffer.status !== status && Date.now() < deadline; await sleep(50)) result = await health.isHealthy('buffer');
        return result;
      };
      await redis.kill();
      const killedAt = Date.now();
      const down = await healthIs('down', 5000);
      const downAfterMs = Date.now() - killedAt;
      expect(down.buffer.status).toBe('down');
      await redis.restart();
      const restartedAt = Date.now();
      const back = await healthIs('up', 15_000);
      expect(back.buffer).toMatchObject({ status: 'up', client: 'connected', transport: 'connected' });
      reportFault('health', { downMsAfterKill: downAfterMs, upMsAfterRestart: Date.now() - restartedAt });
    } finally {
      await transport.close();
    }
  }, 60_000);

  it('a gather that completes without a frozen instance is an error (BUFFER_INSTANCES_MISSING) on its span, its duration and its outcome, and the instance is counted silent', async () => {
    const [frozen] = await startInstances([{ instanceId: 't4', redisUrl: redis.url, namespace, script: FAULT_APP, env: { OTEL_IN_MEMORY: '1' } }]);
    const caller = new BufferClient({ redis: redis.url, namespace, instanceId: 'otel-frozen', timeout: 5000 });
    try {
      await caller.connect();
      expect((await caller.instances()).map((instance) => instance.instanceId)).toContain('t4');
      frozen!.signal('SIGSTOP');
      const result = await caller.gather<string>('whoami', null);
      expect(result).toMatchObject({ completedBy: 'all', missing: ['t4'], missingReasons: { t4: 'silent' } });
      const span = telemetry.spans().filter((record) => record.name === 'send whoami' && record.attributes['messaging.client.id'] === 'otel-frozen').at(-1);
      expect(span).toMatchObject({ statusCode: SpanStatusCode.ERROR, attributes: expect.objectContaining({ 'error.type': 'BUFFER_INSTANCES_MISSING', 'nestjs_redis_buffer.missing': ['t4'] }) });
      const mine = { 'nestjs_redis_buffer.instance.id': 'otel-frozen' };
      const after = await telemetry.metrics();
      expect(total(after, 'messaging.client.operation.duration', { ...mine, 'messaging.destination.name': 'whoami', 'error.type': 'BUFFER_INSTANCES_MISSING' })).toBe(1);
      expect(total(after, 'nestjs_redis_buffer.requests.completed', { ...mine, 'nestjs_redis_buffer.completed_by': 'all', 'error.type': 'BUFFER_INSTANCES_MISSING' })).toBe(1);
      expect(total(after, 'nestjs_redis_buffer.instances.gone', { ...mine, 'nestjs_redis_buffer.reason': 'silent' })).toBeGreaterThanOrEqual(1);
    } finally {
      await caller.close();
      await frozen?.stop('SIGKILL');
    }
  }, 30_000);
});

function lastValue<T>(source: { subscribe(observer: { next(value: T): void; error(error: unknown): void; complete(): void }): unknown }): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let last: T;
    source.subscribe({ next: (value) => (last = value), error: reject, complete: () => resolve(last) });
  });
}
