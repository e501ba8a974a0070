// Every metric name, unit and attribute key this library reports, in one place: the dashboard and
// alert rules in ops/ are written against these (with OpenTelemetry's Prometheus mapping: dots become
// underscores, counters get `_total`).

/** Prefix of this library's own metrics and attributes, where OpenTelemetry's messaging conventions have none. */
export const PREFIX = 'nestjs_redis_buffer';

/** Attribute keys, OpenTelemetry's messaging conventions first, then the library's own. */
export const ATTR = {
  system: 'messaging.system',
  operationName: 'messaging.operation.name',
  operationType: 'messaging.operation.type',
  /**
   * The pattern the sender named (an exact pattern, or a concrete topic such as `order.created`),
   * on both sides of every message; never a wildcard, a Redis channel or a stream key.
   */
  destination: 'messaging.destination.name',
  /**
   * Instance side: the pattern the handler (or durable group) is bound to, exact or wildcard
   * (`order.*`), through which the message reached it.
   */
  subscription: 'messaging.destination.subscription.name',
  consumerGroup: 'messaging.consumer.group.name',
  messageId: 'messaging.message.id',
  bodySize: 'messaging.message.body.size',
  clientId: 'messaging.client.id',
  serverAddress: 'server.address',
  serverPort: 'server.port',
  errorType: 'error.type',
  namespace: `${PREFIX}.namespace`,
  instanceId: `${PREFIX}.instance.id`,
  /** `request`, `event` or `durable`: what kind of message the operation was about. */
  kind: `${PREFIX}.kind`,
  /** The Redis channel (requests, events) or stream key (durable entries) the message went through. */
  channel: `${PREFIX}.channel`,
  completedBy: `${PREFIX}.completed_by`,
  reason: `${PREFIX}.reason`,
} as const;

/** OpenTelemetry instrument names (unit in the comment, as Prometheus shows the series). */
export const METRIC = {
  /** s: `messaging_client_operation_duration_seconds` (histogram). */
  clientOperationDuration: 'messaging.client.operation.duration',
  /** s: `messaging_process_duration_seconds` (histogram). */
  processDuration: 'messaging.process.duration',
  /** {request}: caller, how each request ended, by completed_by and error.type (every outcome from 0). */
  requestsCompleted: `${PREFIX}.requests.completed`,
  /** {refusal}: instance, requests refused, by error.type (every refusal code from 0). */
  refusals: `${PREFIX}.refusals`,
  /** {instance}: caller, instances it stopped waiting for, by reason (silent, unreachable, left; each from 0). */
  instancesGone: `${PREFIX}.instances.gone`,
} as const;

/** Units of the counters a side hands over by name, where `{message}` would be wrong. */
export const COUNTER_UNITS: Readonly<Record<string, string>> = {
  [`${PREFIX}.reconnects`]: '{reconnect}',
  [`${PREFIX}.instances.silent`]: '{instance}',
};

/**
 * The durable half's metric names, for the durable consumer to report under, and the dashboard and
 * alerts to read. Each carries `messaging.destination.subscription.name` (the pattern the group is
 * bound to), `messaging.consumer.group.name`, and `messaging.destination.name` when that binding is
 * an exact pattern (a wildcard binding's stream holds entries of many topics).
 */
export const DURABLE_METRIC = {
  /** {message} gauge: entries of the stream not yet delivered to the group (the group's lag). */
  lag: `${PREFIX}.durable.lag`,
  /** {message} gauge: entries delivered to the group and not yet acknowledged. */
  pending: `${PREFIX}.durable.pending`,
  /** s gauge: age of the group's oldest pending entry. */
  oldestPendingAge: `${PREFIX}.durable.oldest_pending.age`,
  /** {message} counter: deliveries that were a retry of an entry. */
  retries: `${PREFIX}.durable.retries`,
  /** {message} counter: entries moved to the dead-letter stream. */
  deadLetters: `${PREFIX}.durable.dead_letters`,
} as const;

/**
 * Views for `@opentelemetry/sdk-metrics`' `MeterProvider` when metrics go straight to
 * `@opentelemetry/exporter-prometheus`: that exporter does not append the unit to a name, so these
 * give the duration histograms the `_seconds` suffix Prometheus's naming asks for (an OpenTelemetry
 * Collector's Prometheus exporter adds it by itself: without these views its series are named the same).
 *
 * @example
 * ```ts
 * new MeterProvider({ readers: [new PrometheusExporter()], views: prometheusViews() });
 * ```
 */
export function prometheusViews(): Array<{ instrumentName: string; name: string }> {
  return [METRIC.clientOperationDuration, METRIC.processDuration, DURABLE_METRIC.oldestPendingAge].map((instrumentName) => ({ instrumentName, name: `${instrumentName}_seconds` }));
}
