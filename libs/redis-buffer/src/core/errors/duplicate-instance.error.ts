import { BufferError, BufferErrorCode } from './buffer.error.js';

/**
 * `listen()` found another live process using the same `instanceId` in the namespace. Two instances
 * with one id would answer for each other (the caller counts one reply per instance), so the
 * second is refused instead of started.
 */
export class DuplicateInstanceError extends BufferError {
  readonly code = BufferErrorCode.DuplicateInstance;

  constructor(
    readonly instanceId: string,
    readonly namespace: string,
  ) {
    super(
      `Instance id "${instanceId}" is already in use in namespace "${namespace}" by another live process. Give every instance a unique "instanceId" (for example \`\${HOSTNAME}-\${process.pid}\`; PM2 and node cluster workers share HOSTNAME), or leave it unset for a generated one.`,
    );
  }
}
