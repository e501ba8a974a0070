import { BufferError, BufferErrorCode } from './buffer.error.js';

/** A message on one of this library's channels is not a valid envelope; it is logged and dropped. */
export class BadMessageError extends BufferError {
  readonly code = BufferErrorCode.BadMessage;

  constructor(
    readonly reason: string,
    readonly channel?: string,
    options?: { cause?: unknown },
  ) {
    super(`Dropped a malformed message${channel ? ` on "${channel}"` : ''}: ${reason}. See docs/protocol.md for the envelope format.`, options);
  }
}
