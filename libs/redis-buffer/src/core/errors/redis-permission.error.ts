import { BufferError, BufferErrorCode } from './buffer.error.js';

/**
 * Redis refused a command for lack of permission (an ACL user without access to this namespace's
 * channels or durable keys, `NOPERM`). Retrying does not help; the Redis user's ACL or the
 * `namespace` must change. `channels` names the channels, or for durable messaging the keys, refused.
 */
export class RedisPermissionError extends BufferError {
  readonly code = BufferErrorCode.RedisPermission;

  constructor(
    readonly command: string,
    readonly channels: readonly string[],
    /** `fix`: what to grant, when it is not the pub/sub rule (durable messaging's commands and keys). */
    options?: { cause?: unknown; fix?: string },
  ) {
    super(
      `Redis refused ${command} on ${channels.map((c) => `"${c}"`).join(', ')} (${(options?.cause as Error)?.message ?? 'no permission'}): ${options?.fix ?? "grant the Redis user the namespace's channels (ACL SETUSER <user> &<namespace>:* +@pubsub +ping +info +hello +auth +client|setname +quit), or use the namespace it was granted."}`,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
  }
}
