import { BufferError, BufferErrorCode } from './buffer.error.js';

/**
 * A callback passed to a call (`until`, `onReply`) threw. The request is ended with this error (the
 * thrown value is its `cause`); nothing else is affected.
 */
export class CallbackError extends BufferError {
  readonly code = BufferErrorCode.CallbackFailed;

  constructor(
    readonly callback: string,
    readonly pattern: string,
    cause: unknown,
  ) {
    super(`The "${callback}" callback of request "${pattern}" threw: ${(cause as Error)?.message ?? String(cause)}. The request was ended; fix the callback.`, { cause });
  }
}
