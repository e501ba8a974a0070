import type { BufferHeaders } from '../wire/envelope.js';

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
