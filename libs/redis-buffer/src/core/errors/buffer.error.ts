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
