import type { BufferHeaders, EventEnvelope, RequestEnvelope } from '../wire/envelope.js';

/**
 * What a handler learns about the message it is handling: the context a `Responder` hands to a
 * plain handler (the Nest layer wraps it in a `BufferContext`).
 */
export interface MessageContext {
  readonly kind: 'request' | 'event';
  readonly requestId: string;
  readonly pattern: string;
  /** The sender's instance id. */
  readonly senderId: string;
  /** This instance's id. */
  readonly instanceId: string;
  readonly channel: string;
  readonly headers: BufferHeaders;
  /**
   * When the caller stops waiting, in ms since the epoch by this host's clock (arrival + the
   * request's `ttl`); `undefined` for events.
   */
  readonly deadline: number | undefined;
}

/** The context of a request or event that arrived on `channel` at `instanceId`. */
export function messageContext(envelope: RequestEnvelope | EventEnvelope, channel: string, instanceId: string, deadline: number | undefined): MessageContext {
  return { kind: envelope.kind, requestId: envelope.id, pattern: envelope.pattern, senderId: envelope.from, instanceId, channel, headers: envelope.headers, deadline };
}
