import type { ActiveWork } from './active-work.js';
import type { ObservedCounters } from '../telemetry/telemetry.js';

/** Counters for monitoring an instance; they only ever grow. */
export interface ResponderStats {
  /** Requests received that could be answered (a `replyTo` this instance may publish to), refused ones included. */
  requests: number;
  events: number;
  /** Requests refused with `BUFFER_EXPIRED` (they arrived, or waited, past their deadline), and events dropped past theirs. */
  expired: number;
  /** Requests for a pattern this instance has no handler for (only possible with `to`). */
  unhandled: number;
  /** Every refusal sent (expired, unsupported version, bad request, no handler, overloaded, shutting down). */
  refused: number;
  malformedMessages: number;
  /** Replies lost: their PUBLISH failed and they could not be sent again before their request's deadline. */
  replyPublishFailures: number;
  /** Requests whose replies were published again once the connection came back, after their PUBLISH failed. */
  repliesResent: number;
  /** With `signingKey`: messages dropped because they were unsigned or their signature was wrong. */
  forgedMessages: number;
  /** With `signingKey`: correctly signed messages dropped as replays (received before, or stamped beyond `maxClockSkew` from a sender first heard). */
  replayedMessages: number;
  /** Requests answered with `BUFFER_OVERLOADED`, and events dropped, because `maxConcurrentHandlers` were busy and the queue full. */
  overloaded: number;
  /** Times the connection to Redis came back (subscriptions confirmed) after being lost. */
  reconnects: number;
  /** Pings from callers checking that this instance is alive. */
  pings: number;
  /**
   * Topic requests and events received again on another of this instance's matching bindings'
   * channels: a request's repeat is answered with a repeat reply, an event's is dropped.
   */
  repeatDeliveries: number;
  /** Times Redis stopped answering this instance for `livenessTimeout` or more without closing its connection (a network cut, a hung server). */
  cutOffs: number;
  /**
   * Requests dropped unrun after such a cut because they had waited in the network longer than
   * their `ttl` (their callers stopped waiting long ago); also counted in `expired`.
   */
  waitedPast: number;
}

export function emptyResponderStats(): ResponderStats {
  return { requests: 0, events: 0, expired: 0, unhandled: 0, refused: 0, malformedMessages: 0, replyPublishFailures: 0, repliesResent: 0, forgedMessages: 0, replayedMessages: 0, overloaded: 0, reconnects: 0, pings: 0, repeatDeliveries: 0, cutOffs: 0, waitedPast: 0 };
}

/** What an instance reports as OpenTelemetry metrics, read at each collection. */
export function responderCounters(stats: Readonly<ResponderStats>): ObservedCounters {
  return {
    consumed: { name: 'messaging.client.consumed.messages', description: 'Requests and events received.', read: () => stats.requests + stats.events },
    expired: { name: 'nestjs_redis_buffer.requests.expired', description: 'Requests and events that arrived, or waited, past their deadline.', read: () => stats.expired },
    overloaded: { name: 'nestjs_redis_buffer.requests.overloaded', description: 'Requests refused and events dropped because every handler slot and the queue were full.', read: () => stats.overloaded },
    malformed: { name: 'nestjs_redis_buffer.messages.malformed', description: 'Malformed messages dropped.', read: () => stats.malformedMessages },
    forged: { name: 'nestjs_redis_buffer.messages.forged', description: 'Unsigned or forged messages dropped (with signingKey).', read: () => stats.forgedMessages },
    replayed: { name: 'nestjs_redis_buffer.messages.replayed', description: 'Correctly signed messages dropped as replays (with signingKey).', read: () => stats.replayedMessages },
    publishFailures: { name: 'nestjs_redis_buffer.replies.publish_failures', description: "Replies lost: their PUBLISH failed and they could not be sent again before the request's deadline.", read: () => stats.replyPublishFailures },
    resent: { name: 'nestjs_redis_buffer.replies.resent', description: 'Requests whose replies were published again once the connection came back.', read: () => stats.repliesResent },
    reconnects: { name: 'nestjs_redis_buffer.reconnects', description: 'Times the connection to Redis came back after a loss.', read: () => stats.reconnects },
    pings: { name: 'nestjs_redis_buffer.pings', description: 'Liveness pings answered.', read: () => stats.pings },
    repeated: { name: 'nestjs_redis_buffer.deliveries.repeated', description: "Topic requests and events received again on another of this instance's matching bindings' channels (a request's answered with a repeat reply, an event's dropped).", read: () => stats.repeatDeliveries },
  };
}

/** What an instance reports as OpenTelemetry gauges: its handlers now, and its connection. */
export function responderGauges(work: ActiveWork, connected: () => boolean): ObservedCounters {
  return {
    inFlight: { name: 'nestjs_redis_buffer.handlers.in_flight', description: 'Handlers running, and events being handled, on this instance now.', read: () => work.size },
    queued: { name: 'nestjs_redis_buffer.handlers.queued', description: 'Requests waiting for a handler slot.', read: () => work.limiter.queued },
    connected: { name: 'nestjs_redis_buffer.connection.up', description: 'Whether the connection to Redis is up with every subscription confirmed (1) or not (0).', read: () => (connected() ? 1 : 0) },
  };
}
