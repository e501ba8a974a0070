// Types only: `@opentelemetry/api` is an optional peer dependency, loaded at run time when present.
import type * as Otel from '@opentelemetry/api';
import type { BufferHeaders } from '../wire/envelope.js';
import type { CompletedBy, GatherResult } from '../gather/reply.js';
import { ATTR, COUNTER_UNITS, METRIC, PREFIX } from './metric-names.js';
import { OutcomeTally } from './outcome-tally.js';
import type { ServerAddress } from './server-address.js';

type OtelApi = typeof Otel;

/** The instrumentation scope every span and metric of this library is reported under. */
export const TELEMETRY_SCOPE = 'nestjs-redis-buffer';

// OpenTelemetry's advice for messaging durations, with finer buckets below 5 ms: requests here
// often complete in well under a millisecond.
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];
const INSTANCE_BUCKETS = [0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 100, 200];

/** What a message was: a request (replies expected), an event, or a durable entry. */
export type MessageKind = 'request' | 'event' | 'durable';

/** How a request ended on the caller, beyond `completedBy`: it failed, or its caller cancelled it. */
export type RequestOutcome = CompletedBy | 'failed' | 'cancelled';

// The codes an instance refuses with (mirrors REFUSAL_CODES; listed here so each is reported from 0).
const REFUSAL_CODES = ['BUFFER_EXPIRED', 'BUFFER_UNSUPPORTED_VERSION', 'BUFFER_BAD_REQUEST', 'BUFFER_SHUTTING_DOWN', 'BUFFER_NO_HANDLER', 'BUFFER_OVERLOADED'];
// How a caller's request can end, each reported from 0: complete, partial or failed.
const KNOWN_OUTCOMES: ReadonlyArray<[RequestOutcome, string | undefined]> = [
  ['all', undefined],
  ['quorum', undefined],
  ['until', undefined],
  ['stall', undefined],
  ['cancelled', undefined],
  ['timeout', 'BUFFER_TIMEOUT'],
  ['all', 'BUFFER_INSTANCES_MISSING'],
  ...REFUSAL_CODES.map((code): [RequestOutcome, string] => ['all', code]),
  ['all', 'error'],
  ['failed', 'BUFFER_CONNECTION_LOST'],
  ['failed', 'BUFFER_CALLBACK_FAILED'],
  ['failed', 'BUFFER_NO_RESPONDERS'],
];

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

/** One observable instrument: a counter or gauge the library keeps anyway, read at each collection. */
export interface ObservedInstrument {
  readonly name: string;
  readonly description: string;
  /** @default '{message}' for counters, none for gauges */
  readonly unit?: string;
  read(): number;
}

/** Counters (or gauges) a side already keeps; exported as observable instruments, so the hot path pays nothing. */
export type ObservedCounters = Record<string, ObservedInstrument>;

/** An instrument with one value per attribute set (a durable group's backlog, per stream and group), read at each collection. */
export interface ObservedSeries {
  readonly name: string;
  readonly description: string;
  readonly unit?: string;
  readonly kind: 'counter' | 'gauge';
  read(): ReadonlyArray<readonly [value: number, attributes: Readonly<Record<string, string>>]>;
}

/** A caller's span for one message, ended once when the operation ends. */
export interface RequestTrace {
  readonly span: Otel.Span;
  readonly startedAt: number;
  readonly pattern: string;
  readonly kind: MessageKind;
}

/** A handler's span, ended once when its answer ends. */
export interface ProcessTrace {
  readonly span: Otel.Span;
  readonly context: Otel.Context;
  readonly startedAt: number;
  readonly pattern: string;
  /** The pattern the handler is bound to (`''` for a refusal, which reached no handler). */
  readonly binding: string;
  readonly kind: MessageKind;
  readonly group: string | undefined;
}


/** The stable code of an error (`error.type`): its `code`, else its class name, else `error`. */
export function errorTypeOf(error: unknown): string {
  if (typeof error === 'string') return error;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code !== '') return code;
  const name = (error as { name?: unknown } | null)?.name;
  return typeof name === 'string' && name !== '' && name !== 'Error' ? name : 'error';
}

/**
 * Traces and metrics through the OpenTelemetry API, after OpenTelemetry's messaging semantic
 * conventions: one PRODUCER span per message on the caller (`send {pattern}`), whose context travels
 * in the message's headers (W3C `traceparent`/`tracestate`), and one CONSUMER span per handler run
 * on each instance (`process {pattern}`), a child of it. `messaging.destination.name` is the pattern
 * everywhere. Inactive (every method a no-op, nothing allocated) until `attach` is called with the API.
 */
export class BufferTelemetry {
  private api: OtelApi | undefined;
  private tracer: Otel.Tracer | undefined;
  // Without a MeterProvider registered, the meter is a no-op for good: nothing is recorded at all.
  private metricsOn = false;
  // The tracer provider last seen by `tracing()` and whether it records.
  private tracingProvider: unknown;
  private tracingOn = false;
  private requestDuration: Otel.Histogram | undefined;
  private processDuration: Otel.Histogram | undefined;
  private expectedInstances: Otel.Histogram | undefined;
  private unanswered: Otel.Histogram | undefined;
  // What every metric point carries: the README promises namespace and instance id on every series.
  private readonly common: Otel.Attributes;
  // What every span carries besides its own attributes.
  private readonly spanCommon: Otel.Attributes;
  // What each duration carries besides `common`: the conventions' operation duration attributes
  // include the server (conditionally required when known).
  private readonly server: Otel.Attributes;
  private readonly outcomes = new OutcomeTally(KNOWN_OUTCOMES.map(([completedBy, errorType]) => outcomeAttributes(completedBy, errorType)));
  private readonly refusals = new OutcomeTally(REFUSAL_CODES.map((code) => ({ [ATTR.errorType]: code })));
  private readonly gone = new OutcomeTally([{ [ATTR.reason]: 'silent' }, { [ATTR.reason]: 'unreachable' }, { [ATTR.reason]: 'left' }]);
  private meter: Otel.Meter | undefined;
  /** Series handed to `observe` before `attach`: registered when it comes. */
  private readonly waitingSeries: ObservedSeries[] = [];

  constructor(
    private readonly side: 'client' | 'server',
    namespace: string,
    instanceId: string,
    server: ServerAddress = {},
  ) {
    this.common = { [ATTR.system]: 'redis', [ATTR.namespace]: namespace, [ATTR.instanceId]: instanceId };
    this.server = {
      ...(server.address === undefined ? {} : { [ATTR.serverAddress]: server.address }),
      ...(server.port === undefined ? {} : { [ATTR.serverPort]: server.port }),
    };
    this.spanCommon = {
      [ATTR.system]: 'redis',
      [ATTR.clientId]: instanceId,
      [ATTR.instanceId]: instanceId,
      [ATTR.namespace]: namespace,
      ...this.server,
    };
  }

  /**
   * Whether an SDK's tracer provider is registered (now: one may be registered after the client
   * or transport was made). Without one, nothing about tracing runs per message: extracting a
   * context and starting a non-recording span cost about 2 µs per handler run.
   */
  private tracing(api: OtelApi): boolean {
    const provider = api.trace.getTracerProvider() as Otel.TracerProvider & { getDelegate?: () => Otel.TracerProvider };
    const delegate = provider.getDelegate?.() ?? provider;
    // The verdict is kept per provider object: reading a constructor's name is a slow getter.
    if (delegate !== this.tracingProvider) {
      this.tracingProvider = delegate;
      this.tracingOn = delegate.constructor.name !== 'NoopTracerProvider';
    }
    return this.tracingOn;
  }

  /** Turns instrumentation on with the loaded API; `counters` and `gauges` are read at each collection. */
  attach(api: OtelApi, counters: ObservedCounters, gauges: ObservedCounters): void {
    this.api = api;
    this.tracer = api.trace.getTracer(TELEMETRY_SCOPE);
    this.metricsOn = api.metrics.getMeterProvider().constructor.name !== 'NoopMeterProvider';
    const meter = (this.meter = api.metrics.getMeter(TELEMETRY_SCOPE));
    const common = this.common;
    if (this.side === 'client') {
      this.requestDuration = meter.createHistogram(METRIC.clientOperationDuration, {
        unit: 's',
        description: 'Duration of a send: a request from sending it to its completion (any rule), failure or cancellation.',
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
      this.observeTally(meter, METRIC.requestsCompleted, '{request}', 'Requests ended, by how they completed (completed_by) and, when not whole, why (error.type).', this.outcomes);
      this.observeTally(meter, METRIC.instancesGone, '{instance}', 'Instances a caller stopped waiting for: silent (no answer to a ping), unreachable (nobody on its direct channel) or left.', this.gone);
    } else {
      this.processDuration = meter.createHistogram(METRIC.processDuration, {
        unit: 's',
        description: 'Duration of one handler run on an instance, from receipt to its last reply (a refusal: its handling).',
        advice: { explicitBucketBoundaries: DURATION_BUCKETS },
      });
      this.observeTally(meter, METRIC.refusals, '{refusal}', 'Requests refused without running a handler, by code (error.type).', this.refusals);
    }
    for (const counter of Object.values(counters)) {
      // The library's own tallies replace a side's plain counter of the same name.
      if (counter.name === METRIC.refusals || counter.name === METRIC.requestsCompleted || counter.name === METRIC.instancesGone) continue;
      meter.createObservableCounter(counter.name, { description: counter.description, unit: counter.unit ?? COUNTER_UNITS[counter.name] ?? '{message}' }).addCallback((result) => result.observe(counter.read(), common));
    }
    for (const gauge of Object.values(gauges)) {
      meter.createObservableGauge(gauge.name, { description: gauge.description, ...(gauge.unit === undefined ? {} : { unit: gauge.unit }) }).addCallback((result) => result.observe(gauge.read(), common));
    }
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

  private observeTally(meter: Otel.Meter, name: string, unit: string, description: string, tally: OutcomeTally): void {
    const common = this.common;
    meter.createObservableCounter(name, { description, unit }).addCallback((result) => tally.forEach((count, attributes) => result.observe(count, { ...common, ...attributes })));
  }

  /**
   * Starts the caller's span for a message and returns the headers to send: the caller's headers
   * plus the span's context. `channel` is the Redis channel (or stream key) it goes through;
   * `bodySize` the encoded payload's size in bytes, when known. `undefined` when instrumentation is off.
   */
  startRequest(kind: MessageKind, pattern: string, channel: string, id: string, headers: BufferHeaders, bodySize?: number): { trace: RequestTrace; headers: BufferHeaders } | undefined {
    const api = this.api;
    if (api === undefined) return undefined;
    if (!this.tracing(api)) return this.metricsOn ? { trace: { span: api.trace.wrapSpanContext(api.INVALID_SPAN_CONTEXT), startedAt: performance.now(), pattern, kind }, headers } : undefined;
    const span = this.tracer!.startSpan(`send ${pattern}`, { kind: api.SpanKind.PRODUCER });
    // No SDK (or not sampled): no attributes, no headers to add; only the duration metric, if any.
    if (!span.isRecording()) return this.metricsOn ? { trace: { span, startedAt: performance.now(), pattern, kind }, headers } : undefined;
    span.setAttributes({ ...this.messageAttributes('send', pattern, kind, id, bodySize), [ATTR.channel]: channel });
    const carrier: Record<string, string> = { ...headers };
    api.propagation.inject(api.trace.setSpan(api.context.active(), span), carrier);
    return { trace: { span, startedAt: performance.now(), pattern, kind }, headers: carrier };
  }

  /** Ends the caller's span with what the request came to, and records its duration. */
  endRequest(trace: RequestTrace | undefined, result: GatherResult<unknown>, error?: unknown): void {
    const api = this.api;
    if (api === undefined || trace === undefined) return;
    const { span } = trace;
    const completedBy: RequestOutcome = error === undefined ? result.completedBy : 'failed';
    const errorType = error !== undefined ? errorTypeOf(error) : requestErrorType(result);
    if (span.isRecording()) {
      span.setAttributes({
        [`${PREFIX}.expected`]: result.expected ?? -1,
        [`${PREFIX}.finished`]: result.finished,
        [`${PREFIX}.completed_by`]: completedBy,
        [`${PREFIX}.missing`]: [...result.missing],
        [`${PREFIX}.observers`]: result.observers,
        [`${PREFIX}.replies`]: result.replies.length,
        [`${PREFIX}.errors`]: result.errors.length,
      });
      if (errorType !== undefined) markError(api, span, errorType, describe(error) ?? `completed by ${result.completedBy}: ${errorType}`);
    }
    span.end();
    this.outcomes.add(outcomeAttributes(completedBy, errorType));
    if (!this.metricsOn) return;
    const attributes = this.durationAttributes(trace, completedBy, errorType);
    this.requestDuration!.record((performance.now() - trace.startedAt) / 1000, attributes);
    if (result.expected !== undefined) {
      this.expectedInstances!.record(result.expected, attributes);
      this.unanswered!.record(Math.max(0, result.expected - result.finished), attributes);
    }
  }

  /**
   * Ends the caller's span of an operation that has no gather result: an event or durable entry
   * sent (or not: `error`), or a request ended before its result (cancelled by its caller when
   * `error` is unset). Records its duration.
   */
  endSend(trace: RequestTrace | undefined, attributes: Otel.Attributes, error?: unknown): void {
    const api = this.api;
    if (api === undefined || trace === undefined) return;
    const errorType = error === undefined ? undefined : errorTypeOf(error);
    const outcome: RequestOutcome | undefined = trace.kind !== 'request' ? undefined : error === undefined ? 'cancelled' : 'failed';
    if (trace.span.isRecording()) {
      trace.span.setAttributes(attributes);
      if (outcome === 'cancelled') trace.span.setAttribute(`${PREFIX}.cancelled`, true);
      if (errorType !== undefined) markError(api, trace.span, errorType, describe(error));
    }
    trace.span.end();
    if (outcome !== undefined) this.outcomes.add(outcomeAttributes(outcome, errorType));
    if (this.metricsOn) this.requestDuration!.record((performance.now() - trace.startedAt) / 1000, this.durationAttributes(trace, outcome, errorType));
  }

  /** Ends the caller's span of a message as failed with `error` (an error, or just its code), and records it so. */
  failRequest(trace: RequestTrace | undefined, error: unknown): void {
    this.endSend(trace, {}, error ?? 'error');
  }

  /** A caller stopped waiting for an instance: it went silent or left. */
  instanceGone(reason: 'silent' | 'unreachable' | 'left' | string): void {
    if (reason === 'silent' || reason === 'unreachable' || reason === 'left') this.gone.add({ [ATTR.reason]: reason });
  }

  private durationAttributes(trace: RequestTrace, completedBy: RequestOutcome | undefined, errorType: string | undefined): Otel.Attributes {
    return {
      ...this.common,
      ...this.server,
      [ATTR.operationName]: 'send',
      [ATTR.operationType]: 'send',
      [ATTR.destination]: trace.pattern,
      [ATTR.kind]: trace.kind,
      ...(completedBy === undefined ? {} : { [ATTR.completedBy]: completedBy }),
      ...(errorType === undefined ? {} : { [ATTR.errorType]: errorType }),
    };
  }

  /**
   * Starts an instance's span for one handler run, a child of the caller's span when its context
   * came along. `pattern` is the message's (the topic), `binding` the pattern the handler is bound
   * to (`''` when no handler was reached); `source` is the Redis channel a request or event arrived
   * on, or the consumer group of a durable entry (`''` when not known).
   */
  startProcess(kind: MessageKind, pattern: string, binding: string, source: string, id: string, senderId: string, headers: BufferHeaders, bodySize?: number): ProcessTrace | undefined {
    const api = this.api;
    if (api === undefined) return undefined;
    const group = kind === 'durable' ? source : undefined;
    if (!this.tracing(api)) {
      return this.metricsOn ? { span: api.trace.wrapSpanContext(api.INVALID_SPAN_CONTEXT), context: api.ROOT_CONTEXT, startedAt: performance.now(), pattern, binding, kind, group } : undefined;
    }
    const parent = api.propagation.extract(api.ROOT_CONTEXT, headers);
    const span = this.tracer!.startSpan(`process ${pattern}`, { kind: api.SpanKind.CONSUMER }, parent);
    if (!span.isRecording()) {
      if (!this.metricsOn) return undefined;
    } else {
      span.setAttributes({
        ...this.messageAttributes('process', pattern, kind, id, bodySize),
        ...(group !== undefined ? { [ATTR.consumerGroup]: group } : source === '' ? {} : { [ATTR.channel]: source }),
        ...(binding === '' ? {} : { [ATTR.subscription]: binding }),
        [`${PREFIX}.sender.id`]: senderId,
      });
    }
    return { span, context: api.trace.setSpan(parent, span), startedAt: performance.now(), pattern, binding, kind, group };
  }

  /** Runs `fn` with the handler's span as the active context, so the handler's own spans nest under it. */
  runInContext<R>(trace: ProcessTrace | undefined, fn: () => R): R {
    if (trace === undefined || this.api === undefined) return fn();
    return this.api.context.with(trace.context, fn);
  }

  /** Ends a handler's span and records its duration; `errorType` (an error code) when it failed. */
  endProcess(trace: ProcessTrace | undefined, errorType?: string): void {
    const api = this.api;
    if (api === undefined || trace === undefined) return;
    if (errorType !== undefined && trace.span.isRecording()) markError(api, trace.span, errorType, undefined);
    trace.span.end();
    if (!this.metricsOn) return;
    this.processDuration!.record((performance.now() - trace.startedAt) / 1000, {
      ...this.common,
      ...this.server,
      [ATTR.operationName]: 'process',
      [ATTR.operationType]: 'process',
      [ATTR.destination]: trace.pattern,
      ...(trace.binding === '' ? {} : { [ATTR.subscription]: trace.binding }),
      [ATTR.kind]: trace.kind,
      ...(trace.group === undefined ? {} : { [ATTR.consumerGroup]: trace.group }),
      ...(errorType === undefined ? {} : { [ATTR.errorType]: errorType }),
    });
  }

  /** What every message span carries, on either side. */
  private messageAttributes(operation: 'send' | 'process', pattern: string, kind: MessageKind, id: string, bodySize: number | undefined): Otel.Attributes {
    return {
      ...this.spanCommon,
      [ATTR.operationType]: operation,
      [ATTR.operationName]: operation,
      [ATTR.destination]: pattern,
      [ATTR.kind]: kind,
      [ATTR.messageId]: id,
      [`${PREFIX}.pattern`]: pattern,
      ...(bodySize === undefined ? {} : { [ATTR.bodySize]: bodySize }),
    };
  }

  /**
   * A request this instance refused (`code`, one of the refusal codes) without running a handler:
   * counted by code, and recorded as a failed handler run (its span, a child of the caller's, ends
   * with status ERROR; the process duration gets `error.type`). `pattern` is `''` for a request
   * too malformed to name one, `channel` `''` when not known.
   */
  refused(pattern: string, channel: string, id: string, senderId: string, headers: BufferHeaders, code: string): void {
    this.refusals.add({ [ATTR.errorType]: code });
    // A request too malformed to name its pattern is counted only.
    if (this.api === undefined || pattern === '') return;
    this.endProcess(this.startProcess('request', pattern, '', channel, id, senderId, headers), code);
  }
}

function outcomeAttributes(completedBy: RequestOutcome, errorType: string | undefined): Otel.Attributes {
  return errorType === undefined ? { [ATTR.completedBy]: completedBy } : { [ATTR.completedBy]: completedBy, [ATTR.errorType]: errorType };
}

/**
 * Why a completed request is not whole, if it is not: it timed out, instances it waited for went
 * silent or left, or every instance that answered answered with an error (the first one's code).
 * A request the caller's own rule ended (quorum, until, stall) is what the caller asked for.
 */
function requestErrorType(result: GatherResult<unknown>): string | undefined {
  if (result.completedBy === 'timeout') return 'BUFFER_TIMEOUT';
  if (result.completedBy === 'all' && result.missing.length > 0) return 'BUFFER_INSTANCES_MISSING';
  if (result.replies.length === 0 && result.errors.length > 0) return errorTypeOf(result.errors[0]!.error);
  return undefined;
}

function markError(api: OtelApi, span: Otel.Span, errorType: string, message: string | undefined): void {
  span.setAttribute(ATTR.errorType, errorType);
  span.setStatus({ code: api.SpanStatusCode.ERROR, ...(message === undefined ? {} : { message }) });
}

function describe(error: unknown): string | undefined {
  const message = (error as { message?: unknown } | null | undefined)?.message;
  return typeof message === 'string' ? message : undefined;
}
