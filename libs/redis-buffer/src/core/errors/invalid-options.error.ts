import { BufferError, BufferErrorCode } from './buffer.error.js';

/** An option (module-wide or per call) has a wrong type, range, or conflicts with another. */
export class InvalidOptionsError extends BufferError {
  readonly code = BufferErrorCode.InvalidOptions;

  constructor(
    readonly option: string,
    problem: string,
  ) {
    super(`Invalid option "${option}": ${problem}.`);
  }
}
