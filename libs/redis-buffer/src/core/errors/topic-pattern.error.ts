import { BufferError, BufferErrorCode } from './buffer.error.js';

/** A handler's pattern uses a topic wildcard (`*`, `>`) in a way the topic syntax does not allow. */
export class TopicPatternError extends BufferError {
  readonly code = BufferErrorCode.InvalidOptions;

  constructor(
    readonly pattern: string,
    problem: string,
  ) {
    super(`Invalid topic pattern ${JSON.stringify(pattern)}: ${problem}.`);
  }
}
