// Types only: `@opentelemetry/api` is an optional peer dependency, loaded at run time when present.
import type * as Otel from '@opentelemetry/api';
import type { BufferHeaders } from '../wire/envelope.js';
import type { GatherResult } from '../gather/reply.js';

type OtelApi = typeof Otel;

/** The instrumentation scope every span and metric of this library is reported under. */
export const TELEMETRY_SCOPE = 'nestjs-redis-buffer';

// OpenTelemetry's advice for messaging durations, with finer buckets below 5 ms: requests here
// often complete in well under a millisecond.
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];
const INSTANCE_BUCKETS = [0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 100, 200];

/** Prefix of this library's own metrics, where OpenTelemetry's messaging conventions have none. */
const PREFIX = 'nestjs_redis_buffer';

/**
 * Loads `@opentelemetry/api` if the app has it. Without it, or without an SDK registered, tracing
 * and metrics cost nothing but this one attempt.
 */
export function loadOpenTelemetry(): Promise<OtelApi | undefined> {
  return import('@opentelemetry/api').then(
    // Its ES module build exports everything by name; a CommonJS load may nest it under `default`.
    (module: unknown) => {
      const candidate = module as OtelApi & { default?: OtelApi };
      return candidate.SpanKind !== undefined ? candidate : candidate.default;
    },
    () => undefined,
  );
}

/** Counters a side already keeps; exported as observable instruments, so the hot path pays nothing. */
export type ObservedCounters = Record<string, { readonly name: string; readonly description: string; read(): number }>;

/** An instrument with one value per attribute set (a durable group's backlog, per stream and group), read at each collection. */
export interface ObservedSeries {
  readonly name: string;
  readonly description: string;
  readonly unit?: string;
  readonly kind: 'counter' | 'gauge';
  read(): ReadonlyArray<readonly [value: number, attributes: Readonly<Record<string, string>>]>;
}

/** A caller's request span, ended once when the request ends. */
export interface RequestTrace {
  readonly span: Otel.Span;
  readonly startedAt: number;
  readonly pattern: string;
}

/** A handler's span, ended once when its answer ends. */
export interface ProcessTrace {
  readonly span: Otel.Span;
  readonly context: Otel.Context;
  readonly startedAt: number;
  readonly pattern: string;
  readonly kind: 'request' | 'event' | 'durable';
}

/**
 * Traces and metrics through the OpenTelemetry API, named after OpenTelemetry's messaging semantic
 * conventions: one PRODUCER span per request on the caller, whose context travels in the request's
 * headers (W3C `traceparent`/`tracestate`), and one CONSUMER span per handler run on each instance,
 * a child of it. Inactive (every method a no-op, nothing allocated) until `attach` is called with
 * the API.
 */
export class BufferTelemetry {
  private api: OtelApi | undefined;
  private tracer: Otel.Tracer | undefined;
  // Without a MeterProvider registered, the meter is a no-op for good: nothing is recorded at all.
  private metricsOn = false;
  private requestDuration: Otel.Histogram | undefined;
  private processDuration: Otel.Histogram | undefined;
  private expectedInstances: Otel.Histogram | undefined;
  private unanswered: Otel.Histogram | undefined;
  private meter: Otel.Meter | undefined;
  private common: Record<string, string> = {};
  /** Series handed to `observe` before `attach`: registered when it comes. */
  private readonly waitingSeries: ObservedSeries[] = [];

  constructor(
    private readonly side: 'client' | 'server',
    private readonly namespace: string,
    private readonly instanceId: string,
  ) {}

  /**
   * Whether an SDK's tracer provider is registered (now: one may be registered after the client
   * or transport was made). Without one, nothing about tracing runs per message: extracting a
   * context and starting a non-recording span cost about 2 µs per handler run.
   */
  private tracing(api: OtelApi): boolean {
    const provider = api.trace.getTracerProvider() as Otel.TracerProvider & { getDelegate?: () => Otel.TracerProvider };
    return (provider.getDelegate?.() ?? provider).constructor.name !== 'NoopTracerProvider';
  }

  /** Turns instrumentation on with the loaded API; `counters` and `gauges` are read at each collection. */
  attach(api: OtelApi, counters: ObservedCounters, gauges: ObservedCounters): void {
    this.api = api;
    this.tracer = api.trace.getTracer(TELEMETRY_SCOPE);
    this.metricsOn = api.metrics.getMeterProvider().constructor.name !== 'NoopMeterProvider';
    const meter = api.metrics.getMeter(TELEMETRY_SCOPE);
    const common = { 'messaging.system': 'redis', [`${PREFIX}.namespace`]: this.namespace, [`${PREFIX}.instance.id`]: this.instanceId };
    if (this.side === 'client') {
      this.requestDuration = meter.createHistogram('messaging.client.operation.duration', {
        unit: 's',
        description: 'Duration of a request, from sending it to its completion (any rule) or failure.',
        advice: { explicitBucketBoundaries: DURATION_BUCKETS },
      });
      this.expectedInstances = meter.createHistogram(`${PREFIX}.request.expected`, {
        unit: '{instance}',
        description: "Receivers Redis counted for a request (PUBLISH's answer).",
        advice: { explicitBucketBoundaries: INSTANCE_BUCKETS },
      });
      this.unanswered = meter.createHistogram(`${PREFIX}.request.unanswered`, {
        unit: '{instance}',
        description: 'Receivers Redis counted that had not finished when the request completed: how far the count drifted from the replies.',
        advice: { explicitBucketBoundaries: INSTANCE_BUCKETS },
      });
    } else {
      this.processDuration = meter.createHistogram('messaging.process.duration', {
        unit: 's',
        description: 'Duration of one handler run on an instance, from receipt to its last reply.',
        advice: { explicitBucketBoundaries: DURATION_BUCKETS },
      });
    }
    for (const counter of Object.values(counters)) {
      meter.createObservableCounter(counter.name, { description: counter.description }).addCallback((result) => result.observe(counter.read(), common));
    }
    for (const gauge of Object.values(gauges)) {
      meter.createObservableGauge(gauge.name, { description: gauge.description }).addCallback((result) => result.observe(gauge.read(), common));
    }
    this.meter = meter;
    this.common = common;
    this.observe(this.waitingSeries.splice(0));
  }

  /** Adds instruments read at each collection (a part that starts later than the transport, such as the durable consumer). */
  observe(series: readonly ObservedSeries[]): void {
    const meter = this.meter;
    if (meter === undefined) {
      this.waitingSeries.push(...series);
      return;
    }
    for (const one of series) {
      const options = { description: one.description, ...(one.unit === undefined ? {} : { unit: one.unit }) };
      const instrument = one.kind === 'counter' ? meter.createObservableCounter(one.name, options) : meter.createObservableGauge(one.name, options);
      instrument.addCallback((result) => {
        for (const [value, attributes] of one.read()) result.observe(value, { ...this.common, ...attributes });
      });
    }
  }

  /**
   * Starts the caller's span for a request and returns the headers to send: the caller's headers
   * plus the span's context. `undefined` when tracing is off.
   */
  startRequest(operation: 'request' | 'event' | 'durable', pattern: string, channel: string, id: string, headers: BufferHeaders): { trace: RequestTrace; headers: BufferHeaders } | undefined {
    const api = this.api;
    if (api === undefined) return undefined;
    if (!this.tracing(api)) return this.metricsOn ? { trace: { span: api.trace.wrapSpanContext(api.INVALID_SPAN_CONTEXT), startedAt: performance.now(), pattern }, headers } : undefined;
    const span = this.tracer!.startSpan(`send ${pattern}`, { kind: api.SpanKind.PRODUCER });
    // No SDK (or not sampled): no attributes, no headers to add; only the duration metric, if any.
    if (!span.isRecording()) return this.metricsOn ? { trace: { span, startedAt: performance.now(), pattern }, headers } : undefined;
    span.setAttributes({
      'messaging.system': 'redis',
      'messaging.operation.type': 'send',
      'messaging.operation.name': operation,
      'messaging.destination.name': channel,
      'messaging.message.id': id,
      [`${PREFIX}.pattern`]: pattern,
      [`${PREFIX}.instance.id`]: this.instanceId,
    });
    const carrier: Record<string, string> = { ...headers };
    api.propagation.inject(api.trace.setSpan(api.context.active(), span), carrier);
    return { trace: { span, startedAt: performance.now(), pattern }, headers: carrier };
  }

  /** Ends the caller's span with what the request came to, and records its duration. */
  endRequest(trace: RequestTrace | undefined, result: GatherResult<unknown>, error?: Error): void {
    const api = this.api;
    if (api === undefined || trace === undefined) return;
    const { span } = trace;
    const errorType = error === undefined ? (result.completedBy === 'timeout' ? 'BUFFER_TIMEOUT' : undefined) : ((error as { code?: string }).code ?? error.name);
    if (span.isRecording()) this.describeRequest(api, span, result, errorType, error);
    span.end();
    if (this.metricsOn) this.recordRequest(trace, result, errorType);
  }

  private describeRequest(api: OtelApi, span: Otel.Span, result: GatherResult<unknown>, errorType: string | undefined, error: Error | undefined): void {
    span.setAttributes({
      [`${PREFIX}.expected`]: result.expected ?? -1,
      [`${PREFIX}.finished`]: result.finished,
      [`${PREFIX}.completed_by`]: result.completedBy,
      [`${PREFIX}.missing`]: [...result.missing],
      [`${PREFIX}.observers`]: result.observers,
      [`${PREFIX}.replies`]: result.replies.length,
      [`${PREFIX}.errors`]: result.errors.length,
    });
    if (errorType !== undefined) {
      span.setAttribute('error.type', errorType);
      span.setStatus({ code: api.SpanStatusCode.ERROR, message: error?.message ?? `completed by ${result.completedBy}` });
    }
  }

  private recordRequest(trace: RequestTrace, result: GatherResult<unknown>, errorType: string | undefined): void {
    const attributes: Otel.Attributes = {
      'messaging.system': 'redis',
      'messaging.operation.name': 'request',
      'messaging.destination.name': trace.pattern,
      [`${PREFIX}.completed_by`]: result.completedBy,
      ...(errorType === undefined ? {} : { 'error.type': errorType }),
    };
    this.requestDuration!.record((performance.now() - trace.startedAt) / 1000, attributes);
    if (result.expected !== undefined) {
      this.expectedInstances!.record(result.expected, attributes);
      this.unanswered!.record(Math.max(0, result.expected - result.finished), attributes);
    }
  }

  /** Ends the caller's span of an event (or a request cancelled before it ended). */
  endSend(trace: RequestTrace | undefined, attributes: Otel.Attributes, error?: Error): void {
    const api = this.api;
    if (api === undefined || trace === undefined) return;
    if (!trace.span.isRecording()) return trace.span.end();
    trace.span.setAttributes(attributes);
    if (error !== undefined) {
      trace.span.setAttribute('error.type', (error as { code?: string }).code ?? error.name);
      trace.span.setStatus({ code: api.SpanStatusCode.ERROR, message: error.message });
    }
    trace.span.end();
  }

  /** Starts an instance's span for one handler run, a child of the caller's span when its context came along. */
  startProcess(kind: 'request' | 'event' | 'durable', pattern: string, channel: string, id: string, senderId: string, headers: BufferHeaders): ProcessTrace | undefined {
    const api = this.api;
    if (api === undefined) return undefined;
    if (!this.tracing(api)) {
      return this.metricsOn ? { span: api.trace.wrapSpanContext(api.INVALID_SPAN_CONTEXT), context: api.ROOT_CONTEXT, startedAt: performance.now(), pattern, kind } : undefined;
    }
    const parent = api.propagation.extract(api.ROOT_CONTEXT, headers);
    const span = this.tracer!.startSpan(`process ${pattern}`, { kind: api.SpanKind.CONSUMER }, parent);
    if (!span.isRecording()) {
      if (!this.metricsOn) return undefined;
    } else {
      span.setAttributes({
        'messaging.system': 'redis',
        'messaging.operation.type': 'process',
        'messaging.operation.name': kind,
        'messaging.destination.name': channel,
        'messaging.message.id': id,
        [`${PREFIX}.pattern`]: pattern,
        [`${PREFIX}.instance.id`]: this.instanceId,
        [`${PREFIX}.sender.id`]: senderId,
      });
    }
    return { span, context: api.trace.setSpan(parent, span), startedAt: performance.now(), pattern, kind };
  }

  /** Runs `fn` with the handler's span as the active context, so the handler's own spans nest under it. */
  runInContext<R>(trace: ProcessTrace | undefined, fn: () => R): R {
    if (trace === undefined || this.api === undefined) return fn();
    return this.api.context.with(trace.context, fn);
  }

  /** Ends a handler's span and records its duration; `errorType` when it failed. */
  endProcess(trace: ProcessTrace | undefined, errorType?: string): void {
    const api = this.api;
    if (api === undefined || trace === undefined) return;
    if (errorType !== undefined && trace.span.isRecording()) {
      trace.span.setAttribute('error.type', errorType);
      trace.span.setStatus({ code: api.SpanStatusCode.ERROR });
    }
    trace.span.end();
    if (!this.metricsOn) return;
    this.processDuration!.record((performance.now() - trace.startedAt) / 1000, {
      'messaging.system': 'redis',
      'messaging.operation.name': trace.kind,
      'messaging.destination.name': trace.pattern,
      ...(errorType === undefined ? {} : { 'error.type': errorType }),
    });
  }
}
