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
  /** Redis refused a command or a channel for lack of ACL permission; start-up probes every one the configuration needs. */
  RedisPermission: 'BUFFER_REDIS_PERMISSION',
  /** The TLS handshake with Redis failed (untrusted certificate, host name mismatch, TLS on a plain port…); not retried. */
  RedisTls: 'BUFFER_REDIS_TLS',
  /** A refusal: the request reached the instance after its deadline (or waited past it in the queue). */
  Expired: 'BUFFER_EXPIRED',
  /** A refusal: the request's protocol version `v` is one this instance does not speak. */
  UnsupportedVersion: 'BUFFER_UNSUPPORTED_VERSION',
  /** A refusal: the request could be addressed but broke a rule of the envelope (a header too long, …). */
  BadRequest: 'BUFFER_BAD_REQUEST',
  /** A refusal: the instance is draining for shutdown and takes no new work. */
  ShuttingDown: 'BUFFER_SHUTTING_DOWN',
  /** An error reply: the handler's reply (value or error) encodes to more than `maxPayloadBytes`. */
  ReplyTooLarge: 'BUFFER_REPLY_TOO_LARGE',
  /** Another live instance already uses this `instanceId` in the namespace. */
  DuplicateInstance: 'BUFFER_DUPLICATE_INSTANCE',
  /** `scatter`/`send`: the request completed without some instances that went silent or left. */
  InstancesMissing: 'BUFFER_INSTANCES_MISSING',
  /** A callback given to a call (`until`, `onReply`) threw; the request was ended with it. */
  CallbackFailed: 'BUFFER_CALLBACK_FAILED',
  /** Durable messaging: no dead letter with that id (already replayed, or trimmed). */
  DeadLetterNotFound: 'BUFFER_DEAD_LETTER_NOT_FOUND',
  /** Durable messaging, in a dead letter: the entry could not be read, so it was never run. */
  BadEntry: 'BUFFER_BAD_ENTRY',
  /** Durable messaging, in a dead letter: deliveries that never finished (the instance crashed or froze) used up its attempts. */
  AttemptsExhausted: 'BUFFER_ATTEMPTS_EXHAUSTED',
  /** Durable messaging, `durable.replicas`: the master took the entry, but fewer replicas than asked confirmed it in time. */
  ReplicasUnconfirmed: 'BUFFER_REPLICAS_UNCONFIRMED',
} as const;

/**
 * The codes an instance puts in a refusal: a terminal error reply (`"refused": true`) for a request
 * it received but will not run. The caller counts that instance as finished.
 */
export const REFUSAL_CODES: ReadonlySet<string> = new Set([
  BufferErrorCode.Expired,
  BufferErrorCode.UnsupportedVersion,
  BufferErrorCode.BadRequest,
  BufferErrorCode.ShuttingDown,
  BufferErrorCode.NoHandler,
  BufferErrorCode.Overloaded,
]);

export type BufferErrorCode = (typeof BufferErrorCode)[keyof typeof BufferErrorCode];

/** Base class of every error raised by nestjs-redis-buffer. */
export abstract class BufferError extends Error {
  abstract readonly code: BufferErrorCode;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}
