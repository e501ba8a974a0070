/**
 * Stable, machine-readable codes of every error this library raises.
 * Test with `err.code === BufferErrorCode.Timeout` or `instanceof`, never with the message.
 */
export const BufferErrorCode = {
  NoResponders: 'BUFFER_NO_RESPONDERS',
  Timeout: 'BUFFER_TIMEOUT',
  ConnectionLost: 'BUFFER_CONNECTION_LOST',
  PayloadTooLarge: 'BUFFER_PAYLOAD_TOO_LARGE',
  BadMessage: 'BUFFER_BAD_MESSAGE',
  InvalidOptions: 'BUFFER_INVALID_OPTIONS',
  NoHandler: 'BUFFER_NO_HANDLER',
  TooManyRequests: 'BUFFER_TOO_MANY_REQUESTS',
  /** An error reply: the instance's `maxConcurrentHandlers` are busy and its queue is full. */
  Overloaded: 'BUFFER_OVERLOADED',
  RedisPermission: 'BUFFER_REDIS_PERMISSION',
  /** Durable messaging: no dead letter with that id (already replayed, or trimmed). */
  DeadLetterNotFound: 'BUFFER_DEAD_LETTER_NOT_FOUND',
  /** Durable messaging, in a dead letter: the entry could not be read, so it was never run. */
  BadEntry: 'BUFFER_BAD_ENTRY',
  /** Durable messaging, in a dead letter: deliveries that never finished (the instance crashed or froze) used up its attempts. */
  AttemptsExhausted: 'BUFFER_ATTEMPTS_EXHAUSTED',
} as const;

export type BufferErrorCode = (typeof BufferErrorCode)[keyof typeof BufferErrorCode];

/** Base class of every error raised by nestjs-redis-buffer. */
export abstract class BufferError extends Error {
  abstract readonly code: BufferErrorCode;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}
