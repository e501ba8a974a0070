import { BufferError, BufferErrorCode } from './buffer.error.js';

/** The client already has `maxInFlight` requests open; this one was refused before publishing. */
export class TooManyRequestsError extends BufferError {
  readonly code = BufferErrorCode.TooManyRequests;

  constructor(readonly limit: number) {
    super(`${limit} requests are already in flight on this client: wait for some to finish, or raise "maxInFlight".`);
  }
}
