import { withTimeout } from '../async/bounded-wait.js';
import { ConnectionLostError } from '../errors/connection-lost.error.js';
import { RedisPermissionError } from '../errors/redis-permission.error.js';

/**
 * What a process needs from Redis beyond publishing, subscribing and PING (which everyone needs).
 * Start-up probes exactly these, so each role is asked for no more than it uses.
 */
export interface PermissionNeeds {
  /** Counts a channel's subscribers (`PUBSUB NUMSUB`, `PUBSUB SHARDNUMSUB` in a cluster): an instance's duplicate-id check. */
  readonly countSubscribers: boolean;
  /** Unsubscribes (`UNSUBSCRIBE`, `SUNSUBSCRIBE`): an instance drains on shutdown by unsubscribing first. */
  readonly unsubscribe: boolean;
}

/** An instance (`RedisBufferTransport`, `BufferResponder`). */
export const INSTANCE_NEEDS: PermissionNeeds = { countSubscribers: true, unsubscribe: true };
/** A caller (`BufferClient`, `BufferCaller`). */
export const CALLER_NEEDS: PermissionNeeds = { countSubscribers: false, unsubscribe: false };

/** One harmless command that start-up sends to learn whether the user may run it. */
export interface PermissionProbe {
  /** As Redis names it in an ACL (`PUBLISH`, `PUBSUB NUMSUB`…). */
  readonly command: string;
  readonly channels: readonly string[];
  readonly run: () => Promise<unknown>;
}

/**
 * Runs `probes` in order, each bounded by `timeoutMs`, and rejects with a `RedisPermissionError`
 * naming the first command (or channel) Redis refused, with the ACL rule to add. No ACL admin
 * right is needed: every probe is a command the library sends anyway, on a channel nobody
 * subscribes to (`<namespace>:probe`). Any other failure is a `ConnectionLostError`.
 */
export async function runPermissionProbes(probes: readonly PermissionProbe[], namespace: string, timeoutMs: number): Promise<void> {
  for (const probe of probes) {
    try {
      await withTimeout(probe.run(), timeoutMs, () => new ConnectionLostError(`${probe.command} got no answer within connectTimeout (${timeoutMs} ms) while checking permissions`));
    } catch (cause) {
      if (isPermissionError(cause)) throw new RedisPermissionError(probe.command, probe.channels, { cause, namespace });
      throw cause instanceof ConnectionLostError ? cause : new ConnectionLostError(`${probe.command} failed while checking permissions`, { cause });
    }
  }
}

/** Redis refused a command for lack of permission (or authentication). */
export function isPermissionError(error: unknown): boolean {
  return error instanceof Error && /^(NOPERM|NOAUTH|WRONGPASS)\b/.test(error.message);
}

/** The namespace a channel of this library belongs to (everything before its kind: `orders:req:x` → `orders`). */
export function namespaceOfChannel(channel: string): string | undefined {
  const match = /^(.*?):(?:req|evt|direct|inbox|members|probe|who)(?::|$)/.exec(channel);
  return match?.[1];
}
