import { BufferError, BufferErrorCode } from './buffer.error.js';

/** An encoded message exceeds `maxPayloadBytes`; it was refused before publishing. */
export class PayloadTooLargeError extends BufferError {
  readonly code = BufferErrorCode.PayloadTooLarge;

  constructor(
    readonly size: number,
    readonly limit: number,
    readonly what: string,
  ) {
    super(
      `The ${what} encodes to ${size} bytes, over the ${limit}-byte limit: send a smaller payload or raise "maxPayloadBytes" (keep it well below Redis's client-output-buffer-limit for pubsub, 8 MB by default).`,
    );
  }
}
