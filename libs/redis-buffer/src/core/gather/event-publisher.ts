import type { BufferChannels } from '../wire/channels.js';
import type { BufferHeaders, EventEnvelope } from '../wire/envelope.js';
import type { BufferTelemetry } from '../telemetry/telemetry.js';
import type { MembershipView } from '../membership/membership.js';
import type { OutboundEncoder } from './outbound-encoder.js';
import type { RequesterStats } from './requester-stats.js';

/** What an `EventPublisher` sends with and through: the caller's own (see `Requester`). */
export interface EventSending {
  readonly channels: BufferChannels;
  readonly encoder: OutboundEncoder;
  /** Publishes one encoded message, coalesced with the caller's others; resolves with Redis's receiver count. */
  readonly publish: (channel: string, encoded: string) => Promise<number>;
  /** The wildcard event bindings the caller knows of, and how many deliveries beyond the first they make. */
  readonly view: Pick<MembershipView, 'eventBindings' | 'extraEventDeliveries'>;
  readonly telemetry: BufferTelemetry;
  readonly stats: RequesterStats;
  readonly instanceId: string;
  readonly eventTtl: number;
  readonly newId: () => string;
}

/**
 * Events, the caller's fire-and-forget side: one envelope to every instance handling a pattern,
 * exactly or by a wildcard binding the caller knows of, and Redis's count of receivers back.
 */
export class EventPublisher {
  constructor(private readonly sending: EventSending) {}

  /**
   * Resolves with Redis's receiver count, in instances: for a topic published on several channels,
   * the counts summed less the extra deliveries of the instances the view knows are bound to
   * several of them (each runs its handlers once). Throws what encoding throws (too large).
   */
  publish(pattern: string, data: unknown, headers: BufferHeaders): Promise<number> {
    const { channels, telemetry } = this.sending;
    const id = this.sending.newId();
    const channel = channels.event(pattern);
    const traced = telemetry.startRequest('event', pattern, channel, id, headers);
    const envelope: EventEnvelope = {
      v: 1,
      kind: 'event',
      id,
      pattern,
      from: this.sending.instanceId,
      deadline: Date.now() + this.sending.eventTtl,
      headers: traced?.headers ?? headers,
      data: data === undefined ? null : data,
    };
    let encoded: string;
    try {
      encoded = this.sending.encoder.encode(envelope, 'event');
    } catch (error) {
      telemetry.endSend(traced?.trace, {}, error as Error);
      throw error;
    }
    this.sending.stats.events++;
    const routes = this.sending.view.eventBindings.routesFor(pattern);
    const sent = routes.length === 0 ? this.sending.publish(channel, encoded) : this.publishEverywhere(pattern, channel, routes, encoded);
    sent.then(
      (receivers) => telemetry.endSend(traced?.trace, { 'nestjs_redis_buffer.receivers': receivers }, undefined),
      (error: Error) => telemetry.endSend(traced?.trace, { 'nestjs_redis_buffer.receivers': 0 }, error),
    );
    return sent;
  }

  /** Publishes a topic event on its `channel` and on each route's; resolves with the instances reached. */
  private async publishEverywhere(topic: string, channel: string, routes: readonly string[], encoded: string): Promise<number> {
    const { channels, publish } = this.sending;
    const counts = await Promise.all([channel, ...routes.map((route) => channels.event(route))].map((each) => publish(each, encoded)));
    const deliveries = counts.reduce((sum, count) => sum + count, 0);
    return Math.max(0, deliveries - this.sending.view.extraEventDeliveries(topic, routes));
  }
}
