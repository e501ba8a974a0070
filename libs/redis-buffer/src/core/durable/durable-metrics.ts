import { ATTR, DURABLE_METRIC } from '../telemetry/metric-names.js';
import { isWildcardPattern } from '../wire/topic.js';
import type { ObservedSeries } from '../telemetry/telemetry.js';
import type { DurableConsumer } from './durable-consumer.js';

/** Prefix of this library's own metrics, where OpenTelemetry's messaging conventions have none. */
const PREFIX = 'nestjs_redis_buffer.durable';

/**
 * A group's attributes: the pattern it is bound to (`messaging.destination.subscription.name`), its
 * name, and `messaging.destination.name` when the binding is an exact pattern. A wildcard binding's
 * stream holds entries of every topic it matched, so no one destination names it: the attribute
 * keeps one meaning everywhere, the pattern a publisher named.
 */
function groupAttributes(binding: string, group: string): Record<string, string> {
  const attributes: Record<string, string> = { [ATTR.subscription]: binding, [ATTR.consumerGroup]: group };
  if (!isWildcardPattern(binding)) attributes[ATTR.destination] = binding;
  return attributes;
}

/**
 * The durable consumer's metrics for OpenTelemetry: its counters, and each group's backlog with the
 * messaging conventions' attributes (see `groupAttributes`). Handler durations are
 * `messaging.process.duration` with `nestjs_redis_buffer.kind` = `durable`, recorded by the
 * transport's telemetry per run.
 */
export function durableMetrics(consumer: DurableConsumer): ObservedSeries[] {
  const { stats } = consumer;
  const counter = (name: string, description: string, read: () => number): ObservedSeries => ({ name, description, kind: 'counter', unit: '{message}', read: () => [[read(), {}]] });
  const perGroup = (name: string, description: string, unit: string, read: (sample: (typeof consumer.backlog)[number]) => number | undefined): ObservedSeries => ({
    name,
    description,
    unit,
    kind: 'gauge',
    read: () =>
      consumer.backlog.flatMap((sample) => {
        const value = read(sample);
        return value === undefined ? [] : [[value, groupAttributes(sample.pattern, sample.group)] as const];
      }),
  });
  const perGroupCounter = (name: string, description: string, read: (group: (typeof consumer.groups)[number]) => number): ObservedSeries => ({
    name,
    description,
    unit: '{message}',
    kind: 'counter',
    read: () => consumer.groups.map((group) => [read(group), groupAttributes(group.pattern, group.group)] as const),
  });
  return [
    counter('messaging.client.consumed.messages', 'Durable entries read from the streams (new ones; claims counted apart).', () => stats.received),
    counter(`${PREFIX}.runs`, 'Durable handler runs started (retries and duplicate runs included).', () => stats.runs),
    counter(`${PREFIX}.handled`, 'Durable handler runs that succeeded and were acknowledged.', () => stats.handled),
    counter(`${PREFIX}.failed`, 'Durable handler runs that failed.', () => stats.failed),
    perGroupCounter(DURABLE_METRIC.retries, 'Durable attempts started after a failure, per group.', (group) => group.retried),
    perGroupCounter(DURABLE_METRIC.deadLetters, 'Durable entries moved to a dead-letter stream by this instance, per group.', (group) => group.deadLettered),
    counter(`${PREFIX}.claims`, 'Durable entries claimed from a consumer that stopped renewing them.', () => stats.claimed),
    counter(`${PREFIX}.late_acks_refused`, 'Durable runs that succeeded after their entry was claimed elsewhere or acknowledged: run twice.', () => stats.lateAcksRefused),
    counter(`${PREFIX}.duplicate_runs`, 'Durable runs of an entry that was already acknowledged when they ended.', () => stats.duplicatesRun),
    counter(`${PREFIX}.oversized`, 'Durable entries over maxPayloadBytes, dead-lettered unread.', () => stats.oversized),
    counter(`${PREFIX}.forged`, 'Durable entries unsigned or with an invalid signature (with signingKey), dead-lettered unrun.', () => stats.forged),
    counter(`${PREFIX}.filtered`, "Durable entries acknowledged without running: their headers did not match the handler's headers filter.", () => stats.filtered),
    perGroup(DURABLE_METRIC.lag, "Entries of the stream not yet delivered to the group (XINFO GROUPS lag).", '{message}', (sample) => sample.lag),
    perGroup(DURABLE_METRIC.pending, 'Entries delivered to the group and not acknowledged yet.', '{message}', (sample) => sample.pending),
    perGroup(DURABLE_METRIC.oldestPendingAge, "Age of the group's oldest unacknowledged entry, since its publication.", 's', (sample) => sample.oldestPendingAgeMs / 1000),
  ];
}
