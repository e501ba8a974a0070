import { BufferError, BufferErrorCode } from './buffer.error.js';

/** `replayDeadLetter` was given an id that is not (or no longer) in the group's dead-letter stream. */
export class DeadLetterNotFoundError extends BufferError {
  readonly code = BufferErrorCode.DeadLetterNotFound;

  constructor(
    readonly pattern: string,
    readonly group: string,
    readonly deadLetterId: string,
  ) {
    super(`No dead letter "${deadLetterId}" for "${pattern}" in group "${group}": it was replayed already, or trimmed. List what is there with durable.deadLetters(pattern, group).`);
  }
}
