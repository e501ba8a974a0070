import { BufferError, BufferErrorCode } from './buffer.error.js';
import type { BufferReply } from '../reply.js';

/**
 * The request reached its `timeout` before it was complete. Carries what did arrive, so a caller
 * can still use a partial answer and knows it is partial.
 */
export class BufferTimeoutError<T = unknown> extends BufferError {
  readonly code = BufferErrorCode.Timeout;

  constructor(
    readonly pattern: string,
    readonly timeout: number,
    /** Every reply (values and errors) that arrived before the deadline, in arrival order. */
    readonly replies: ReadonlyArray<BufferReply<T>>,
    /** How many instances received the request, or `undefined` if Redis never said. */
    readonly expected: number | undefined,
    /** How many instances had finished replying when the deadline passed. */
    readonly finished: number,
  ) {
    super(
      `Request "${pattern}" timed out after ${timeout} ms with ${finished} of ${expected ?? 'an unknown number of'} instances finished: raise "timeout", or complete earlier with "quorum", "until" or "stall".`,
    );
  }
}
