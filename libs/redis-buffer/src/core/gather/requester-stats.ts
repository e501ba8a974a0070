import type { ObservedCounters } from '../telemetry/telemetry.js';

/** Counters a caller can read for monitoring; they only ever grow. */
export interface RequesterStats {
  requests: number;
  events: number;
  /** Replies accepted (values, errors, refusals, and the closing envelopes of streams). */
  replies: number;
  /** Replies for a request that had already completed, been cancelled, or was never ours. */
  lateReplies: number;
  duplicateReplies: number;
  malformedMessages: number;
  /** With `signingKey`: replies dropped because they were unsigned or their signature was wrong. */
  forgedMessages: number;
  /** With `signingKey`: correctly signed messages dropped as replays (received before, or stamped beyond `maxClockSkew` from a sender first heard). */
  replayedMessages: number;
  /** Pings sent to instances a request had waited on (see `livenessTimeout`). */
  pings: number;
  /** Times an instance was found silent (no answer to a ping within `livenessTimeout`). */
  silentInstances: number;
  /** Membership messages (`hello`, `bye`) dropped as replays, or hellos dropped because the table of unvouched members was full. */
  droppedMembership: number;
  /** Liveness rounds whose timer fired late because this process's event loop was blocked: that time was not held against instances. */
  lagForgiven: number;
}

export function emptyRequesterStats(): RequesterStats {
  return { requests: 0, events: 0, replies: 0, lateReplies: 0, duplicateReplies: 0, malformedMessages: 0, forgedMessages: 0, replayedMessages: 0, pings: 0, silentInstances: 0, droppedMembership: 0, lagForgiven: 0 };
}

/** What a caller reports as OpenTelemetry counters, read at each collection. */
export function requesterCounters(stats: Readonly<RequesterStats>): ObservedCounters {
  return {
    sent: { name: 'messaging.client.sent.messages', description: 'Requests and events sent.', read: () => stats.requests + stats.events },
    consumed: { name: 'messaging.client.consumed.messages', description: 'Replies received and accepted.', read: () => stats.replies },
    duplicate: { name: 'nestjs_redis_buffer.replies.duplicate', description: 'Replies dropped as duplicates (same instance and sequence number).', read: () => stats.duplicateReplies },
    late: { name: 'nestjs_redis_buffer.replies.late', description: 'Replies that arrived after their request had ended.', read: () => stats.lateReplies },
    malformed: { name: 'nestjs_redis_buffer.messages.malformed', description: 'Malformed messages dropped.', read: () => stats.malformedMessages },
    forged: { name: 'nestjs_redis_buffer.messages.forged', description: 'Unsigned or forged messages dropped (with signingKey).', read: () => stats.forgedMessages },
    replayed: { name: 'nestjs_redis_buffer.messages.replayed', description: 'Correctly signed messages dropped as replays (with signingKey).', read: () => stats.replayedMessages },
    pings: { name: 'nestjs_redis_buffer.pings', description: 'Liveness pings sent to instances a request waited on.', read: () => stats.pings },
    silent: { name: 'nestjs_redis_buffer.instances.silent', description: 'Times an instance was found silent (no answer to a ping).', read: () => stats.silentInstances },
  };
}
