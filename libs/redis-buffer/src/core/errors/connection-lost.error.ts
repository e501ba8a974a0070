import { BufferError, BufferErrorCode } from './buffer.error.js';
import type { BufferReply } from '../gather/reply.js';

/**
 * The connection to Redis is not usable (never connected, lost, or closed), so the request could not
 * be sent or its replies can no longer arrive. Replies that arrived before the loss are attached.
 */
export class ConnectionLostError<T = unknown> extends BufferError {
  readonly code = BufferErrorCode.ConnectionLost;

  constructor(
    readonly reason: string,
    options?: { cause?: unknown; replies?: ReadonlyArray<BufferReply<T>> },
  ) {
    super(`Redis connection unavailable: ${reason}. Check that Redis is reachable at the "redis" option's address; connections are retried in the background, so later requests succeed once it is.`, options);
    this.replies = options?.replies ?? [];
  }

  /** Replies that arrived before the connection was lost. */
  readonly replies: ReadonlyArray<BufferReply<T>>;
}
